"""Pure Python core, what the routing Lambda imports: the decision policy, the bundle manifest, teams, reserved labels."""
