"""One thin module per subcommand: parse options, call a domain function, print."""
