/*
 * loadgen: options and results shared by mt-loadgen's two engines, the raw
 * OP_MSG engine on libuv (loadgen.c) and the libmongoc driver engine
 * (loadgen_driver.c).
 */
#ifndef MT_LOADGEN_H
#define MT_LOADGEN_H

#include "lathist.h"

#include <stdint.h>

typedef enum {
    LG_MODE_FIND1,     /* find {_id: <random>} answered by one ~200 B document */
    LG_MODE_FIND100,   /* find {} answered by 100 documents of ~200 B */
    LG_MODE_INSERT1K,  /* insert of one 1 KiB document */
    LG_MODE_BIG4M,     /* alternately insert a 4 MiB document and find one back */
    LG_MODE_SHAPES,    /* finds whose filters all have distinct field names: {"f<i>": 1} */
    LG_MODE_SAMESHAPE, /* as shapes, but every filter is {"f": 1}: the control for shapes */
    LG_MODE_IDLE,      /* each connection says hello once, then stays idle */
} lg_mode_t;

typedef enum {
    LG_ENGINE_RAW,    /* hand-framed OP_MSG on libuv sockets */
    LG_ENGINE_MONGOC, /* libmongoc, one client and one thread per connection */
} lg_engine_t;

/* Size of the document inserted by insert1k, and of the big4m documents
 * (the stub serves a big document of the same size). */
#define LG_INSERT_DOC_BYTES 1024
#define LG_BIG_DOC_BYTES (4 * 1024 * 1024)

typedef struct {
    const char *target; /* HOST:PORT as given */
    const char *label;  /* name printed as "target"; defaults to target */
    char host[64];
    int port;
    lg_mode_t mode;
    lg_engine_t engine;
    int conns;
    double seconds; /* measured time; for shapes/idle a time limit (0 = none) */
    double warmup;
    uint64_t count; /* requests to send (shapes, sameshape, or any mode with count_given) */
    int count_given;
    uint64_t start; /* shapes: first field number */
    int json;
    const char *tls_ca;   /* --tls: CA file; NULL: plaintext */
    const char *tls_host; /* SNI and the name checked */
} lg_opts_t;

typedef struct {
    uint64_t requests;     /* completed during the measured period */
    uint64_t all_requests; /* completed in the whole run, warm-up included */
    uint64_t errors;       /* failed connects, lost connections, bad or ok:0 replies (whole run) */
    uint64_t bytes_out;
    uint64_t bytes_in;
    double seconds; /* length of the measured period */
    mt_lathist_t hist;
} lg_result_t;

const char *lg_mode_str(lg_mode_t mode);
const char *lg_engine_str(lg_engine_t engine);

/* Run the libmongoc engine (find1 or find100). Returns 0, or -1 when it could
 * not start at all (the reason is printed on stderr). */
int lg_driver_run(const lg_opts_t *o, lg_result_t *r);

#endif
