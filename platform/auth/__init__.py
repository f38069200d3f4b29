"""Users, teams, roles, API tokens and portal sessions."""
