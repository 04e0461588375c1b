/*
 * loadgen_driver: mt-loadgen's libmongoc engine. Each connection is a thread
 * with its own mongoc_client_t running finds in a closed loop, to show that a
 * real driver (handshake, sessions, cursors) works through the target.
 */
#include "loadgen.h"

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

typedef struct {
    const lg_opts_t *o;
    const mongoc_uri_t *uri;
    unsigned index;
    uint64_t measure_from; /* uv_hrtime() at the end of the warm-up */
    uint64_t stop_at;
    lg_result_t res;
    pthread_t thread;
} lg_driver_thread_t;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void *driver_thread(void *arg)
{
    lg_driver_thread_t *t = arg;
    int hundred = t->o->mode == LG_MODE_FIND100;
    int64_t expect = hundred ? 100 : 1;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (t->index + 1);
    bson_t opts = BSON_INITIALIZER;
    bson_error_t error;

    mongoc_client_t *client = mongoc_client_new_from_uri(t->uri);
    if (client == NULL) {
        t->res.errors++;
        return NULL;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_collection_t *coll =
        mongoc_client_get_collection(client, "bench", hundred ? "hundred" : "one");
    if (hundred) {
        BSON_APPEND_INT32(&opts, "batchSize", 100);
    } else {
        BSON_APPEND_INT64(&opts, "limit", 1);
        BSON_APPEND_BOOL(&opts, "singleBatch", true);
    }

    for (;;) {
        uint64_t t0 = uv_hrtime();
        if (t0 >= t->stop_at)
            break;
        bson_t filter = BSON_INITIALIZER;
        if (!hundred)
            BSON_APPEND_INT64(&filter, "_id", (int64_t)(xorshift(&rng) % 1000000));
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        const bson_t *doc;
        int64_t n = 0;
        while (mongoc_cursor_next(cursor, &doc))
            n++;
        int failed = mongoc_cursor_error(cursor, &error) || n != expect;
        mongoc_cursor_destroy(cursor);
        bson_destroy(&filter);
        uint64_t t1 = uv_hrtime();

        if (failed) {
            t->res.errors++;
            if (t->res.errors <= 3)
                fprintf(stderr, "mt-loadgen: driver find: %s (%lld documents)\n",
                        error.message[0] ? error.message : "unexpected reply", (long long)n);
        }
        if (!failed)
            t->res.all_requests++;
        if (!failed && t0 >= t->measure_from && t1 <= t->stop_at) {
            t->res.requests++;
            mt_lathist_record(&t->res.hist, t1 - t0);
        }
    }

    bson_destroy(&opts);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return NULL;
}

int lg_driver_run(const lg_opts_t *o, lg_result_t *r)
{
    if (o->mode != LG_MODE_FIND1 && o->mode != LG_MODE_FIND100) {
        fprintf(stderr, "mt-loadgen: --driver mongoc supports --mode find1 and find100 only\n");
        return -1;
    }
    char uri_str[256];
    snprintf(uri_str, sizeof(uri_str),
             "mongodb://%s/?directConnection=true&serverSelectionTimeoutMS=2000&appname=mt-loadgen",
             o->target);

    mongoc_init();
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &error);
    if (uri == NULL) {
        fprintf(stderr, "mt-loadgen: bad target for the driver: %s\n", error.message);
        mongoc_cleanup();
        return -1;
    }

    lg_driver_thread_t *threads = calloc((size_t)o->conns, sizeof(*threads));
    if (threads == NULL) {
        mongoc_uri_destroy(uri);
        mongoc_cleanup();
        return -1;
    }
    uint64_t now = uv_hrtime();
    uint64_t measure_from = now + (uint64_t)(o->warmup * 1e9);
    uint64_t stop_at = measure_from + (uint64_t)(o->seconds * 1e9);
    int started = 0;
    for (int i = 0; i < o->conns; i++) {
        lg_driver_thread_t *t = &threads[i];
        t->o = o;
        t->uri = uri;
        t->index = (unsigned)i;
        t->measure_from = measure_from;
        t->stop_at = stop_at;
        if (pthread_create(&t->thread, NULL, driver_thread, t) != 0) {
            fprintf(stderr, "mt-loadgen: could not start thread %d\n", i);
            r->errors++;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i].thread, NULL);
        r->requests += threads[i].res.requests;
        r->all_requests += threads[i].res.all_requests;
        r->errors += threads[i].res.errors;
        mt_lathist_merge(&r->hist, &threads[i].res.hist);
    }
    r->seconds = o->seconds;

    free(threads);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return 0;
}
