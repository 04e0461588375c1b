/*
 * test_uri: --upstream as HOST:PORT or a connection string: every form that
 * must parse, every refusal with the option it must name, and the seedlist
 * rules for what SRV and TXT answers may say.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "uri.h"

/* Inline arrays, not pointers: Criterion runs each case in a fresh process. */
typedef struct {
    char in[160];
    int scheme;
    char hosts[96]; /* "h:p,h:p" */
    char replica_set[16];
    int tls;
    int direct;
    char ca[40];
    int allow_certs, allow_hosts;
    unsigned heartbeat_ms, connect_timeout_ms;
    char ignored[48];
} good_case_t;

static void join_hosts(const mt_uri_t *u, char *out, size_t cap)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < u->nhosts; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s:%u", i ? "," : "", u->hosts[i].host,
                              u->hosts[i].port);
}

ParameterizedTestParameters(uri, parses)
{
    static good_case_t cases[] = {
        {"127.0.0.1:27017", MT_URI_HOSTPORT, "127.0.0.1:27017", "", 0, 1, "", 0, 0, 10000, 3000,
         ""},
        {"db.internal:27019", MT_URI_HOSTPORT, "db.internal:27019", "", 0, 1, "", 0, 0, 10000, 3000,
         ""},
        {"[::1]:27018", MT_URI_HOSTPORT, "::1:27018", "", 0, 1, "", 0, 0, 10000, 3000, ""},
        {"mongodb://h1:27017,h2/?replicaSet=rs0&tls=true&tlsCAFile=ca.pem", MT_URI_MONGODB,
         "h1:27017,h2:27017", "rs0", 1, 0, "ca.pem", 0, 0, 10000, 3000, ""},
        {"mongodb://localhost", MT_URI_MONGODB, "localhost:27017", "", 0, 0, "", 0, 0, 10000, 3000,
         ""},
        {"mongodb://[::1]:27018/app?directConnection=true", MT_URI_MONGODB, "::1:27018", "", 0, 1,
         "", 0, 0, 10000, 3000, ""},
        {"mongodb://H1.Example.COM:1,h1.example.com:1/", MT_URI_MONGODB, "h1.example.com:1", "", 0,
         0, "", 0, 0, 10000, 3000, ""},
        {"mongodb+srv://cluster0.example.net/", MT_URI_SRV, "", "", 1, 0, "", 0, 0, 10000, 3000,
         ""},
        {"MONGODB+SRV://Cluster0.Example.net/app?tls=false", MT_URI_SRV, "", "", 0, 0, "", 0, 0,
         10000, 3000, ""},
        {"mongodb://h/?ssl=true", MT_URI_MONGODB, "h:27017", "", 1, 0, "", 0, 0, 10000, 3000, ""},
        {"mongodb://h/?tls=true&ssl=true", MT_URI_MONGODB, "h:27017", "", 1, 0, "", 0, 0, 10000,
         3000, ""},
        {"mongodb://h/?tlsInsecure=true", MT_URI_MONGODB, "h:27017", "", 1, 0, "", 1, 1, 10000,
         3000, ""},
        {"mongodb://h/?TLSALLOWINVALIDHOSTNAMES=true", MT_URI_MONGODB, "h:27017", "", 1, 0, "", 0,
         1, 10000, 3000, ""},
        {"mongodb://h/?tls=true&tlsAllowInvalidCertificates=true", MT_URI_MONGODB, "h:27017", "", 1,
         0, "", 1, 0, 10000, 3000, ""},
        {"mongodb://h/?heartbeatFrequencyMS=500&connectTimeoutMS=0", MT_URI_MONGODB, "h:27017", "",
         0, 0, "", 0, 0, 500, 0, ""},
        {"mongodb://h/?tlsCAFile=%2Fetc%2Fssl%2Fca%2Bx.pem", MT_URI_MONGODB, "h:27017", "", 1, 0,
         "/etc/ssl/ca+x.pem", 0, 0, 10000, 3000, ""},
        {"mongodb://h/db?retryWrites=true&w=majority&appName=x&&", MT_URI_MONGODB, "h:27017", "", 0,
         0, "", 0, 0, 10000, 3000, "retryWrites, w, appName"},
        {"mongodb://a:1,b:2,c:3/?replicaSet=r%20s", MT_URI_MONGODB, "a:1,b:2,c:3", "r s", 0, 0, "",
         0, 0, 10000, 3000, ""},
    };
    return cr_make_param_array(good_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(good_case_t *c, uri, parses)
{
    mt_uri_t u;
    char err[256], hosts[256];

    cr_assert_eq(mt_uri_parse(c->in, &u, err, sizeof(err)), 0, "%s: %s", c->in, err);
    cr_assert_eq((int)u.scheme, c->scheme, "%s", c->in);
    join_hosts(&u, hosts, sizeof(hosts));
    cr_assert_str_eq(hosts, c->hosts, "%s", c->in);
    cr_assert_str_eq(u.replica_set, c->replica_set, "%s", c->in);
    cr_assert_eq(u.tls, (bool)c->tls, "%s: tls", c->in);
    cr_assert_eq(u.direct, (bool)c->direct, "%s: direct", c->in);
    cr_assert_str_eq(u.tls_ca_file, c->ca, "%s", c->in);
    cr_assert_eq(u.tls_allow_invalid_certificates, (bool)c->allow_certs, "%s", c->in);
    cr_assert_eq(u.tls_allow_invalid_hostnames, (bool)c->allow_hosts, "%s", c->in);
    cr_assert_eq(u.heartbeat_ms, c->heartbeat_ms, "%s", c->in);
    cr_assert_eq(u.connect_timeout_ms, c->connect_timeout_ms, "%s", c->in);
    cr_assert_str_eq(u.ignored, c->ignored, "%s", c->in);
}

Test(uri, srv_keeps_the_name_and_service)
{
    mt_uri_t u;
    char err[256];

    cr_assert_eq(mt_uri_parse("mongodb+srv://Cluster0.Example.net/?srvServiceName=custom", &u, err,
                              sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(u.srv_host, "cluster0.example.net");
    cr_assert_str_eq(u.srv_service, "custom");
    cr_assert_eq(u.nhosts, 0);
    cr_assert_eq(mt_uri_parse("mongodb+srv://c.example.net", &u, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(u.srv_service, "mongodb");
}

Test(uri, client_certificate_and_password)
{
    mt_uri_t u;
    char err[256];

    cr_assert_eq(mt_uri_parse("mongodb://h/?tlsCertificateKeyFile=client.pem"
                              "&tlsCertificateKeyFilePassword=p%26w",
                              &u, err, sizeof(err)),
                 0, "%s", err);
    cr_assert(u.tls, "a client certificate implies TLS");
    cr_assert_str_eq(u.tls_cert_key_file, "client.pem");
    cr_assert_str_eq(u.tls_cert_key_password, "p&w");
}

typedef struct {
    char in[96];
    char names[48]; /* what the one-line error must name */
} bad_case_t;

ParameterizedTestParameters(uri, refuses)
{
    static bad_case_t cases[] = {
        {"mongodb://user:pass@h/", "user name and password"},
        {"mongodb://user@h/", "user name and password"},
        {"mongodb+srv://u:p@c.example.net/", "user name and password"},
        {"mongodb://u:pa/ss@h/", "user name and password"},
        {"mongodb://h/?x=1@y", "option x"},
        {"mongodb://h?tls=true", "'/'"},
        {"mongodb://", "no host"},
        {"mongodb:///?tls=true", "no host"},
        {"mongodb://h:0/", "host h:0"},
        {"mongodb://h:99999/", "host h:99999"},
        {"mongodb://h:27x/", "host h:27x"},
        {"mongodb://h:/", "host h:"},
        {"mongodb://::1/", "host ::1"},
        {"mongodb://[::1/", "host [::1"},
        {"mongodb://h,/", "host"},
        {"mongodb://%2Ftmp%2Fmongodb-27017.sock/", "Unix domain sockets"},
        {"mongodb://h%zz/", "host h%zz"},
        {"mongodb+srv://a.example.net:27017/", "takes no port"},
        {"mongodb+srv://a.example.net,b.example.net/", "exactly one host"},
        {"mongodb+srv://localhost/", "not a domain name"},
        {"mongodb+srv://a_b.example.net/", "not a domain name"},
        {"mongodb+srv://c.example.net/?directConnection=true", "directConnection"},
        {"mongodb://a,b/?directConnection=true", "directConnection"},
        {"mongodb://h/?directConnection=1", "directConnection"},
        {"mongodb://h/?tls=true&ssl=false", "tls and ssl"},
        {"mongodb://h/?tlsInsecure=true&tlsAllowInvalidHostnames=true", "tlsInsecure"},
        {"mongodb://h/?tlsAllowInvalidCertificates=false&tlsInsecure=false", "tlsInsecure"},
        {"mongodb://h/?tls=false&tlsCAFile=ca.pem", "option tls"},
        {"mongodb://h/?ssl=false&tlsAllowInvalidHostnames=true", "option tls"},
        {"mongodb://h/?tls=yes", "option tls"},
        {"mongodb://h/?tlsInsecure=maybe", "option tlsInsecure"},
        {"mongodb://h/?heartbeatFrequencyMS=499", "option heartbeatFrequencyMS"},
        {"mongodb://h/?heartbeatFrequencyMS=", "option heartbeatFrequencyMS"},
        {"mongodb://h/?connectTimeoutMS=-1", "option connectTimeoutMS"},
        {"mongodb://h/?connectTimeoutMS=1e3", "option connectTimeoutMS"},
        {"mongodb://h/?tlsCAFile=", "option tlsCAFile"},
        {"mongodb://h/?tlsCAFile=a%2", "option tlsCAFile"},
        {"mongodb://h/?tlsCAFile=a%zz", "option tlsCAFile"},
        {"mongodb://h/?tlsCAFile=a%00b", "option tlsCAFile"},
        {"mongodb://h/?tlsCertificateKeyFile=", "option tlsCertificateKeyFile"},
        {"mongodb://h/?replicaSet", "option replicaSet"},
        {"mongodb://h/?replicaSet=", "option replicaSet"},
        {"mongodb://h/?bogusOption=1", "option bogusOption"},
        {"mongodb://h/?srvServiceName=x", "option srvServiceName"},
        {"mongodb+srv://c.example.net/?srvServiceName=a.b", "option srvServiceName"},
        {"http://h/", "scheme"},
        {"h", "expected HOST:PORT"},
        {":27017", "expected HOST:PORT"},
        {"h:0", "expected HOST:PORT"},
        {"", "expected HOST:PORT"},
    };
    return cr_make_param_array(bad_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(bad_case_t *c, uri, refuses)
{
    mt_uri_t u;
    char err[256];

    cr_assert_eq(mt_uri_parse(c->in, &u, err, sizeof(err)), -1, "'%s' parsed", c->in);
    cr_assert_not_null(strstr(err, c->names), "'%s': error '%s' does not name %s", c->in, err,
                       c->names);
    cr_assert_null(strchr(err, '\n'), "one line");
}

Test(uri, passwords_never_reach_the_error)
{
    mt_uri_t u;
    char err[256];

    cr_assert_eq(mt_uri_parse("mongodb://admin:hunter2@h/", &u, err, sizeof(err)), -1);
    cr_assert_null(strstr(err, "hunter2"), "%s", err);
}

typedef struct {
    char srv[48];
    char target[64];
    int ok;
} srv_case_t;

ParameterizedTestParameters(uri, srv_targets)
{
    static srv_case_t cases[] = {
        {"cluster0.mongotap.test", "member1.cluster0.mongotap.test", 1},
        {"cluster0.mongotap.test", "member1.cluster0.mongotap.test.", 1},
        {"cluster0.mongotap.test", "Member1.MONGOTAP.test", 1},
        {"cluster0.mongotap.test", "mongotap.test", 0},
        {"cluster0.mongotap.test", "xmongotap.test", 0},
        {"cluster0.mongotap.test", "member1.evil.test", 0},
        {"cluster0.mongotap.test", "mongotap.test.evil.net", 0},
        {"example.net", "a.example.net", 1},
        {"example.net", "example.net", 0},
        {"example.net", "a.other.net", 0},
    };
    return cr_make_param_array(srv_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(srv_case_t *c, uri, srv_targets)
{
    cr_assert_eq(mt_uri_srv_target_ok(c->srv, c->target), (bool)c->ok, "%s under %s", c->target,
                 c->srv);
}

Test(uri, txt_options)
{
    mt_uri_t u;
    char err[256];

    cr_assert_eq(mt_uri_parse("mongodb+srv://c.example.net/", &u, err, sizeof(err)), 0);
    cr_assert_eq(mt_uri_apply_txt(&u, "replicaSet=rs0&authSource=admin", err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_str_eq(u.replica_set, "rs0");
    cr_assert_str_eq(u.auth_source, "admin");

    cr_assert_eq(mt_uri_parse("mongodb+srv://c.example.net/?replicaSet=mine", &u, err, sizeof(err)),
                 0);
    cr_assert_eq(mt_uri_apply_txt(&u, "replicaSet=rs0", err, sizeof(err)), 0);
    cr_assert_str_eq(u.replica_set, "mine", "the string wins over TXT");

    cr_assert_eq(mt_uri_apply_txt(&u, "ssl=false", err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "ssl"), "%s", err);
    cr_assert_eq(mt_uri_apply_txt(&u, "replicaSet", err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "replicaSet"), "%s", err);
    cr_assert_eq(mt_uri_apply_txt(&u, "authSource=", err, sizeof(err)), -1);
}

Test(uri, describe)
{
    mt_uri_t u;
    char err[256], line[256];

    cr_assert_eq(
        mt_uri_parse("mongodb://a:1,[::1]:2/?replicaSet=rs0&tls=true", &u, err, sizeof(err)), 0,
        "%s", err);
    mt_uri_describe(&u, line, sizeof(line));
    cr_assert_str_eq(line, "mongodb://a:1,[::1]:2/?replicaSet=rs0&tls=true");
    cr_assert_eq(mt_uri_parse("127.0.0.1:27017", &u, err, sizeof(err)), 0);
    mt_uri_describe(&u, line, sizeof(line));
    cr_assert_str_eq(line, "127.0.0.1:27017");
    cr_assert_eq(mt_uri_parse("mongodb+srv://c.example.net/?tls=false", &u, err, sizeof(err)), 0);
    mt_uri_describe(&u, line, sizeof(line));
    cr_assert_str_eq(line, "mongodb+srv://c.example.net/");
}
