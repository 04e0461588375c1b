/*
 * dns: name look-ups that never block the loop: c-ares on libuv, as Node
 * does it. SRV and TXT for mongodb+srv (the Initial DNS Seedlist Discovery
 * rules are uri.c's), A/AAAA for member host names. A resolver given as
 * IP:PORT (MONGOTAP_DNS_SERVER) answers every look-up.
 */
#ifndef MT_DNS_H
#define MT_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "uri.h"

typedef struct mt_dns mt_dns_t;

#define MT_DNS_MAX_ADDRS 16

/* server: "IP:PORT" or "[IPv6]:PORT", or NULL for the system's resolvers.
 * NULL with one line in err when it cannot be used. */
mt_dns_t *mt_dns_new(uv_loop_t *loop, const char *server, char *err, size_t errlen);
/* Ends every pending look-up (each callback runs once more, with an error)
 * and closes the handles; the memory goes once they are closed. */
void mt_dns_close(mt_dns_t *d);

/* status 0 on success, else a c-ares status, described by error. */
typedef struct {
    char target[MT_URI_HOST_MAX];
    uint16_t port;
} mt_dns_srv_t;
typedef void (*mt_dns_srv_cb)(void *data, int status, const char *error, const mt_dns_srv_t *recs,
                              size_t n);
/* TXT: each record's strings joined, as the seedlist rules want. */
typedef void (*mt_dns_txt_cb)(void *data, int status, const char *error, const char *const *txts,
                              size_t n);
typedef void (*mt_dns_addr_cb)(void *data, int status, const char *error,
                               const struct sockaddr_storage *addrs, size_t n);

int mt_dns_srv(mt_dns_t *d, const char *name, mt_dns_srv_cb cb, void *data);
int mt_dns_txt(mt_dns_t *d, const char *name, mt_dns_txt_cb cb, void *data);
/* A and AAAA (and /etc/hosts); an IP literal comes back at once, still
 * from the loop. */
int mt_dns_addr(mt_dns_t *d, const char *host, uint16_t port, mt_dns_addr_cb cb, void *data);

/* mongodb+srv: the SRV answer becomes uri's seed list and the TXT record's
 * options are applied. cb gets 0, or -1 with one line saying what was
 * wrong (no records, a target outside the domain, a bad TXT record...). */
typedef void (*mt_dns_seedlist_cb)(void *data, int status, const char *error);
int mt_dns_seedlist(mt_dns_t *d, mt_uri_t *uri, mt_dns_seedlist_cb cb, void *data);

#endif
