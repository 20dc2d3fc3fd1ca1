"""What the tests expect of the CSV export (accounts.export), written down
once and apart from the code that makes it."""

# The first line of every export.
HEADER_LINE = "name,email,signed_up_at,status,confirmed_at,consent_version"
HEADER = HEADER_LINE.split(",")
