"""Connectors fetch a channel's statement for a date and land it under {root}/raw/{channel}/{D}/."""
