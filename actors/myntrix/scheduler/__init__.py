"""Myntrix task scheduling: the cron scheduler actor, task actions, runs and their history."""
