/*
 * listener: binding, and refusing before the limits bite. libuv closes a
 * connection it cannot accept for lack of fds without telling us, so
 * admission refuses (and logs) before the open-file limit is reached.
 */
#include "listener.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "log.h"

void mt_listen_init(mt_listen_t *l, uv_loop_t *loop, mt_stats_t *stats, uint32_t max_connections)
{
    memset(l, 0, sizeof(*l));
    l->loop = loop;
    l->stats = stats;
    l->max_connections = max_connections;
}

void mt_listen_peer_name(uv_tcp_t *tcp, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int n = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];

    snprintf(out, cap, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &n) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    }
}

/* ---- admission ------------------------------------------------------------ */

/* Sessions the open-file limit leaves room for: two fds each. Read on every
 * accept (one cheap syscall) since the limit can change while running. */
static size_t fd_capacity(const mt_listen_t *l)
{
    struct rlimit rl;
    size_t used = l->fds_at_start + MT_LISTEN_FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return SIZE_MAX;
    return (size_t)rl.rlim_cur > used ? ((size_t)rl.rlim_cur - used) / 2 : 0;
}

const char *mt_listen_refusal(const mt_listen_t *l, size_t active, bool draining)
{
    if (draining)
        return "shutting down";
    if (active >= l->max_connections)
        return "--max-connections reached";
    if (active >= fd_capacity(l))
        return "file descriptor limit reached (raise ulimit -n)";
    return NULL;
}

/* At most one line a second, so a flood of refusals cannot flood the log;
 * the line says how many went unlogged since the last one. */
static void refusal_log(mt_listen_t *l, const char *addr, const char *why)
{
    uint64_t now = uv_now(l->loop);

    if (l->last_refusal_log && now - l->last_refusal_log < 1000) {
        l->refusals_unlogged++;
        return;
    }
    if (l->refusals_unlogged)
        mt_warn("refused %s: %s (and %llu more since the last such line)", addr, why,
                (unsigned long long)l->refusals_unlogged);
    else
        mt_warn("refused %s: %s", addr, why);
    l->refusals_unlogged = 0;
    l->last_refusal_log = now;
}

static void refused_closed_cb(uv_handle_t *h)
{
    free(h);
}

void mt_listen_refuse(mt_listen_t *l, uv_stream_t *server, const char *why)
{
    uv_tcp_t *t = malloc(sizeof(*t));

    mt_stats_add(l->stats, MT_STAT_CONNECTIONS_REFUSED, 1);
    if (!t) {
        mt_listen_accept_failed(l, "refusal", UV_ENOMEM);
        return;
    }
    uv_tcp_init(l->loop, t);
    if (uv_accept(server, (uv_stream_t *)t) == 0) {
        char addr[64];
        mt_listen_peer_name(t, addr, sizeof(addr));
        refusal_log(l, addr, why);
    }
    uv_close((uv_handle_t *)t, refused_closed_cb);
}

void mt_listen_accept_failed(mt_listen_t *l, const char *what, int err)
{
    uint64_t now = uv_now(l->loop);

    mt_stats_add(l->stats, MT_STAT_CONNECTIONS_REFUSED, 1);
    /* at most one line a second: an fd shortage would otherwise flood the log */
    if (now - l->last_accept_error_log >= 1000 || l->last_accept_error_log == 0) {
        mt_warn("accept failed: %s: %s", what, uv_strerror(err));
        l->last_accept_error_log = now;
    }
}

/* ---- binding -------------------------------------------------------------- */

/* Resolves a listen address synchronously: at start-up only. */
static int resolve_listen(uv_loop_t *loop, const mt_hostport_t *hp, struct sockaddr_storage *out)
{
    uv_getaddrinfo_t req;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char port[8];
    int rc;

    if (uv_ip4_addr(hp->host, hp->port, (struct sockaddr_in *)out) == 0 ||
        uv_ip6_addr(hp->host, hp->port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    snprintf(port, sizeof(port), "%u", hp->port);
    rc = uv_getaddrinfo(loop, &req, NULL, hp->host, port, &hints);
    if (rc < 0)
        return rc;
    memcpy(out, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

static size_t count_open_fds(void)
{
    uv_fs_t req;
    uv_dirent_t ent;
    size_t n = 0;

    if (uv_fs_scandir(NULL, &req, "/proc/self/fd", 0, NULL) < 0) {
        uv_fs_req_cleanup(&req);
        return 16; /* no /proc: assume a typical start-up */
    }
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF)
        n++;
    uv_fs_req_cleanup(&req);
    return n;
}

static void plan_fd_capacity(mt_listen_t *l)
{
    struct rlimit rl;
    size_t cap;

    l->fds_at_start = count_open_fds();
    /* like other proxies, raise the soft limit as far as the hard one allows
     * for --max-connections */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t want =
            (rlim_t)(l->fds_at_start + MT_LISTEN_FD_RESERVE) + 2 * (rlim_t)l->max_connections;
        if (rl.rlim_cur < want && rl.rlim_max > rl.rlim_cur) {
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                mt_debug("cannot raise the open-file limit");
        }
    }
    cap = fd_capacity(l);
    if (cap < l->max_connections && !l->capacity_told) {
        l->capacity_told = true;
        mt_info("the open-file limit (ulimit -n) allows about %zu client connections, fewer than "
                "--max-connections %u; raise it to serve more",
                cap, l->max_connections);
    }
}

int mt_listen_open(mt_listen_t *l, const mt_hostport_t *addrs, size_t n, uv_connection_cb cb,
                   void *owner, char *bound, size_t cap)
{
    size_t used = 0, base = l->nlisteners;

    bound[0] = '\0';
    for (size_t i = 0; i < n && base + i < MT_LISTEN_MAX; i++) {
        const mt_hostport_t *hp = &addrs[i];
        mt_listener_t *ls = &l->listeners[base + i];
        struct sockaddr_storage ss;
        int len = sizeof(ss), rc;
        char desc[MT_CLI_HOST_MAX + 8];
        mt_hostport_t real = *hp;

        rc = resolve_listen(l->loop, hp, &ss);
        if (rc == 0) {
            uv_tcp_init(l->loop, &ls->tcp);
            ls->tcp.data = ls;
            ls->owner = owner;
            ls->open = true;
            l->nlisteners = base + i + 1;
            rc = uv_tcp_bind(&ls->tcp, (const struct sockaddr *)&ss, 0);
        }
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&ls->tcp, 511, cb);
        if (rc < 0) {
            mt_cli_format_hostport(hp, desc, sizeof(desc));
            mt_error("cannot listen on %s: %s", desc, uv_strerror(rc));
            return rc;
        }
        if (uv_tcp_getsockname(&ls->tcp, (struct sockaddr *)&ss, &len) == 0)
            real.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                       : ((struct sockaddr_in *)&ss)->sin_port);
        mt_cli_format_hostport(&real, desc, sizeof(desc));
        used +=
            (size_t)snprintf(bound + used, used < cap ? cap - used : 0, "%s%s", i ? "," : "", desc);
    }
    plan_fd_capacity(l);
    return 0;
}

void mt_listen_close(mt_listen_t *l)
{
    for (size_t i = 0; i < l->nlisteners; i++) {
        if (l->listeners[i].open) {
            uv_close((uv_handle_t *)&l->listeners[i].tcp, NULL);
            l->listeners[i].open = false;
        }
    }
}
