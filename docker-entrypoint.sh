#!/bin/sh
# Entry point of the image: runs the command (the broker, device-sim or
# consumer) as uid/gid 1883, like the Mosquitto image.
#
# Started as root (the default), it first gives uid 1883 the directories the
# broker writes: /mosquitto/data and /mosquitto/log are usually bind mounts
# of ./data and ./log, owned by whoever cloned the repository, and the broker
# could not create its store or log file there otherwise (the classic
# "permission denied" of Mosquitto in Docker). The official Mosquitto image's
# entry point does the same chown. Then it drops to 1883 for good.
set -e
if [ "$(id -u)" = "0" ]; then
    for dir in /mosquitto/data /mosquitto/log; do
        if [ -d "$dir" ]; then
            chown -R 1883:1883 "$dir" || echo "warning: cannot chown $dir" >&2
        fi
    done
    exec setpriv --reuid=1883 --regid=1883 --clear-groups -- "$@"
fi
exec "$@"
