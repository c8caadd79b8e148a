"""Surfacing new topics: escalated novel requests grouped into candidate intents."""
