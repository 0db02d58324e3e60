"""The `precog` command and `precog up`: the shell over the services. It imports them; none imports it."""
