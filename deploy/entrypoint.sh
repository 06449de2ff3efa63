#!/bin/sh
# Read secrets from files: for every ECONOME_<NAME>_FILE variable, export ECONOME_<NAME>
# with the file's content (Docker secrets, systemd credentials), then run the command.
# Secrets thus never sit in the compose file, the unit file or `docker inspect`.
set -eu
for var in $(env | sed -n 's/^\(ECONOME_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
    eval "file=\${${var}_FILE}"
    if [ ! -r "$file" ]; then
        echo "econome: ${var}_FILE=$file is not readable" >&2
        exit 2
    fi
    value="$(cat "$file")"
    export "$var=$value"
    unset "${var}_FILE"
done
exec "$@"
