#!/bin/bash
# healthcheck.sh: the container HEALTHCHECK (installed as mongotap-healthcheck). Sends GET /healthz
# (liveness: the process answers), or with --ready GET /readyz (readiness: the upstream answers
# too), to mongotap's admin endpoint over bash's /dev/tcp, so the image needs no curl or wget, and
# exits 0 only on a 200 answer. With the admin endpoint off it checks that the first listener
# accepts.
#
#   mongotap-healthcheck [--ready] [PID]    PID: the mongotap process whose flags to honour
#                                           (default 1)
#
# It runs inside the container, so the default loopback admin address 127.0.0.1:27080 answers.
set -u

path=/healthz
if [ "${1:-}" = --ready ]; then
    path=/readyz
    shift
fi

admin=${MONGOTAP_ADMIN:-127.0.0.1:27080}
listen=${MONGOTAP_LISTEN:-127.0.0.1:27018}
listen=${listen%%,*}

# Flags win over the environment in mongotap: read them from its command line when it is mongotap
# (the image's ENTRYPOINT makes it PID 1; under an init process, `docker run --init`, only the
# environment is read).
pid=${1:-1}
if [ -r "/proc/$pid/cmdline" ]; then
    mapfile -d '' args <"/proc/$pid/cmdline"
    first=${args[0]:-}
    if [ "${first##*/}" = mongotap ]; then
        seen_listen=0
        for ((i = 1; i < ${#args[@]}; i++)); do
            case ${args[i]} in
            --admin) admin=${args[i + 1]:-$admin}; i=$((i + 1)) ;;
            --admin=*) admin=${args[i]#--admin=} ;;
            --listen | --listen=*)
                if [ "${args[i]}" = --listen ]; then
                    value=${args[i + 1]:-}; i=$((i + 1))
                else
                    value=${args[i]#--listen=}
                fi
                # the first --listen flag is the first listener
                [ $seen_listen -eq 1 ] || listen=$value
                seen_listen=1
                ;;
            esac
        done
    fi
fi

# HOST:PORT or [V6]:PORT -> a host to connect to; a wildcard bind is reached over loopback.
target_host() {
    local host=${1%:*}
    host=${host#[}
    host=${host%]}
    case $host in
    "" | 0.0.0.0 | ::) host=127.0.0.1 ;;
    esac
    printf '%s' "$host"
}

if [ "$admin" = off ]; then
    host=$(target_host "$listen")
    port=${listen##*:}
    if ! exec 3<>"/dev/tcp/$host/$port"; then
        echo "mongotap-healthcheck: nothing accepts on $host:$port (admin endpoint is off)" >&2
        exit 1
    fi
    exec 3>&-
    echo "mongotap-healthcheck: $host:$port accepts"
    exit 0
fi

host=$(target_host "$admin")
port=${admin##*:}
if ! exec 3<>"/dev/tcp/$host/$port"; then
    echo "mongotap-healthcheck: cannot connect to the admin endpoint at $host:$port" >&2
    exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$path" "$host" "$port" >&3
status=""
IFS= read -r -t 5 status <&3
exec 3>&-
status=${status%$'\r'}
case $status in
"HTTP/1."[01]" 200"*)
    echo "mongotap-healthcheck: $host:$port$path: $status"
    exit 0
    ;;
esac
echo "mongotap-healthcheck: $host:$port$path answered '${status:-nothing}'" >&2
exit 1
