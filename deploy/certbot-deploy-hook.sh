#!/bin/sh
# certbot deploy hook for relay-server.
#
# relay-server reads its certificate and key as the unprivileged user `relay`, and reads them
# again by itself within seconds when they change (or at once on SIGHUP, `systemctl reload`),
# without dropping a connection. certbot keeps keys readable by root only, so after each issue
# or renewal this hook lets the group `relay` read this domain's files, then asks for a reload.
# (With [tls.acme] the relay gets its certificate itself and needs neither certbot nor this.)
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

# try-reload-or-restart: reload if running; on the very first issue the relay may not be
# installed yet.
systemctl try-reload-or-restart relay-server.service
