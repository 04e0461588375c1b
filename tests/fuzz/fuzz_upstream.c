/*
 * fuzz_upstream: the pure readers of what others write about the upstream:
 * connection strings and TXT records (uri.c), SRV targets, and hello replies
 * fed to the topology (topology.c). Each input is tried as all of them.
 */
#include <bson/bson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topology.h"
#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    char err[512], line[1024];
    mt_uri_t uri, srv;
    mt_topo_t topo;
    bson_t doc;

    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (mt_uri_parse(s, &uri, err, sizeof(err)) == 0)
        mt_uri_describe(&uri, line, sizeof(line));
    if (mt_uri_parse("mongodb+srv://cluster0.mongotap.test/", &srv, err, sizeof(err)) == 0)
        mt_uri_apply_txt(&srv, s, err, sizeof(err));
    mt_uri_srv_target_ok("cluster0.mongotap.test", s);
    mt_uri_srv_target_ok(s, "member1.cluster0.mongotap.test");

    /* as a hello reply from the first seed of a set, then from a member it
     * may have taught us */
    if (bson_init_static(&doc, data, size) && bson_validate(&doc, BSON_VALIDATE_NONE, NULL)) {
        char *json;
        mt_uri_parse("mongodb://a:1,b:2/?replicaSet=rs0", &uri, err, sizeof(err));
        mt_topo_init(&topo, &uri);
        mt_topo_on_hello(&topo, 0, &doc, 1.0);
        mt_topo_on_hello(&topo, topo.nmembers - 1, &doc, 2.0);
        mt_topo_on_failure(&topo, 1, "fuzz");
        json = mt_topo_json(&topo, &uri);
        bson_free(json);
        mt_uri_parse("mongodb://a:1/", &uri, err, sizeof(err));
        mt_topo_init(&topo, &uri);
        mt_topo_on_hello(&topo, 0, &doc, 1.0);
    }
    free(s);
    return 0;
}
