#!/bin/sh
# certbot deploy hook for relay-server.
#
# relay-server reads its certificate and key once, at start, as the unprivileged user `relay`.
# certbot keeps keys readable by root only, so after each issue or renewal this hook lets the
# group `relay` read this domain's files, then restarts the relay so that it serves the new
# certificate. Connected agents are told 1001 "going away" and are back within a second or two.
#
# Install:
#   install -m 0755 deploy/certbot-deploy-hook.sh /usr/local/sbin/relay-server-certbot-hook
#   certbot certonly --standalone -d relay.example.com \
#       --deploy-hook /usr/local/sbin/relay-server-certbot-hook
# certbot remembers the hook for renewals. Set DOMAIN below (or in the environment) to the name
# in the relay's [tls] paths.
set -eu

DOMAIN="${DOMAIN:-relay.example.com}"
lineage="${RENEWED_LINEAGE:-/etc/letsencrypt/live/$DOMAIN}"
name="$(basename "$lineage")"

# certbot runs every deploy hook for every certificate on this machine; act on ours only.
[ "$name" = "$DOMAIN" ] || exit 0

archive="/etc/letsencrypt/archive/$name"
chgrp relay /etc/letsencrypt/live /etc/letsencrypt/archive "$lineage" "$archive" "$archive"/privkey*.pem
chmod g+rx /etc/letsencrypt/live /etc/letsencrypt/archive "$lineage" "$archive"
chmod g+r "$archive"/privkey*.pem

# try-restart: restart if running; on the very first issue the relay may not be installed yet.
systemctl try-restart relay-server.service
