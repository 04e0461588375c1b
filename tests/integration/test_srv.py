"""mongodb+srv the way Atlas serves it: dnsmasq on a loopback port answers SRV, TXT and A records
for cluster0.mongotap.test, mongotap asks it (--dns-server, MONGOTAP_DNS_SERVER) through c-ares,
takes the seed list from SRV and replicaSet from TXT, turns TLS on by itself, and connects to the
listed members: three scripted members, each behind stunnel4 with a certificate for its name."""

import os
import re

import pymongo

import helpers
from faults.members import ScriptedSet

DOMAIN = "cluster0.mongotap.test"


def dns_records(members, txt="replicaSet=rs0", srv_name="_mongodb._tcp." + DOMAIN):
    """members: [(host name, port)]"""
    out = []
    for name, port in members:
        out.append("--srv-host=%s,%s,%d" % (srv_name, name, port))
        out.append("--host-record=%s,127.0.0.1" % name)
    if txt:
        out.append("--txt-record=%s,%s" % (DOMAIN, txt))
    return out


def test_srv_seed_list_txt_options_and_tls(mongotap, jongodb, certs, stunnel, dbname):
    ca = os.path.join(certs, "ca.pem")
    with ScriptedSet(jongodb) as rs:
        names = []
        for i, m in enumerate(rs.members):
            tunnel = stunnel(m.name, cert=os.path.join(certs, "server.pem"),
                             key=os.path.join(certs, "server.key"))
            m.alias = "member%d.%s:%d" % (i + 1, DOMAIN, tunnel.port)
            names.append(("member%d.%s" % (i + 1, DOMAIN), tunnel.port))
        dns = helpers.Dnsmasq(dns_records(names))
        try:
            tap = mongotap("--upstream", "mongodb+srv://%s/?tlsCAFile=%s&heartbeatFrequencyMS=500"
                           % (DOMAIN, ca), "--dns-server", dns.address, upstream=None)
            line = tap.wait_for_log(r"upstream mongodb\+srv://%s resolved: (\S+) replicaSet=rs0$"
                                    % re.escape(DOMAIN), 15)
            assert line, tap.logs()
            assert sorted(line.group(1).split(",")) == sorted("%s:%d" % n for n in names)
            assert tap.wait_for_log(r"upstream primary is %s" % re.escape(rs.members[0].name),
                                    15), tap.logs()
            with pymongo.MongoClient(tap.uri(dbname), serverSelectionTimeoutMS=15000) as c:
                c[dbname]["srv"].insert_one({"_id": 1, "via": "srv"})
                assert c[dbname]["srv"].find_one({"_id": 1}) == {"_id": 1, "via": "srv"}
            assert rs.members[0].client_conns(), "the session went to the primary, through TLS"

            up = tap.get_json("/api/upstream")
            assert up["srv"] == DOMAIN and up["set_name"] == "rs0" and up["tls"] is True, up
            assert sorted(m["member"] for m in up["members"]) == sorted(m.name
                                                                        for m in rs.members)
            assert all(m["up"] for m in up["members"]), up
            asked = dns.out.text()
            for record in ("query[SRV] _mongodb._tcp." + DOMAIN, "query[TXT] " + DOMAIN,
                           "query[A] member1." + DOMAIN):
                assert record in asked, asked
        finally:
            dns.kill()


def test_srv_without_tls_through_the_environment(mongotap, jongodb, dbname):
    with ScriptedSet(jongodb) as rs:
        names = [("member%d.%s" % (i + 1, DOMAIN), m.port) for i, m in enumerate(rs.members)]
        for (name, port), m in zip(names, rs.members):
            m.alias = "%s:%d" % (name, port)
        dns = helpers.Dnsmasq(dns_records(names, txt="replicaSet=rs0&authSource=admin"))
        try:
            tap = mongotap("--upstream", "mongodb+srv://%s/?tls=false&heartbeatFrequencyMS=500"
                           % DOMAIN, upstream=None, env={"MONGOTAP_DNS_SERVER": dns.address})
            assert tap.wait_for_log(r"upstream primary is ", 15), tap.logs()
            with pymongo.MongoClient(tap.uri(dbname), serverSelectionTimeoutMS=15000) as c:
                assert c[dbname].command("ping")["ok"] == 1.0
            assert tap.get_json("/api/upstream")["tls"] is False
        finally:
            dns.kill()


def test_srv_target_outside_the_domain_is_refused(mongotap):
    dns = helpers.Dnsmasq(dns_records([("member1.elsewhere.test", 27017)]))
    try:
        tap = mongotap("--upstream", "mongodb+srv://%s/" % DOMAIN, "--dns-server", dns.address,
                       upstream=None)
        assert tap.wait_for_log(r"warn .*upstream mongodb\+srv://%s: SRV _mongodb\._tcp\.%s: "
                                r"target member1\.elsewhere\.test is not in the domain"
                                % (re.escape(DOMAIN), re.escape(DOMAIN)), 15), tap.logs()
        status, _, body = tap.get("/readyz")
        assert status == 503 and b"not resolved yet" in body, body
    finally:
        dns.kill()
