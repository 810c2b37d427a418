"""`polymm-web` (the optional extra `polymm[web]`): the original bot's HTTP API and web page, over the trader's control socket and systemd."""
