/*
 * fuzz_stats: the input is a conversation on two connections. Each whole
 * message the framer cuts goes through the proxy's decode step (proxy/account.c)
 * to stats as a request or a reply (the low bits of its request id choose
 * which, and on which connection; another bit splits it over two reads), with
 * time moving forward so that windows open, close and get analysed; at the end
 * every output is rendered (each window in detail too), then reset and
 * rendered again. Nothing may crash, leak or read out of bounds.
 */
#include <bson/bson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "json.h"
#include "stats.h"
#include "wire.h"

static void render_all(mt_stats_t *st, uint64_t now)
{
    static const mt_window_filter_t filter = {"a", "?", "", "find"};
    char *out[16];
    size_t n = 0;
    bool found;

    out[n++] = mt_stats_json(st, now, 10);
    out[n++] = mt_stats_connections_json(st, now);
    out[n++] = mt_stats_windows_json(st, 10, false, NULL);
    out[n++] = mt_stats_windows_json(st, 10, true, &filter);
    /* every window of the first few ids, whole and by segment */
    for (uint64_t id = 1; id <= 3; id++)
        for (uint32_t seg = 0; seg <= 2; seg++)
            bson_free(mt_stats_window_json(st, id, seg, &found));
    out[n++] = mt_stats_findings_json(st);
    out[n++] = mt_stats_metrics(st, now);
    out[n++] = mt_stats_report(st, MT_REPORT_JSON, now);
    out[n++] = mt_stats_report(st, MT_REPORT_MARKDOWN, now);
    out[n++] = mt_stats_report(st, MT_REPORT_HTML, now);
    for (size_t i = 0; i < n; i++)
        bson_free(out[i]);
}

/* rendered as the findings log and the live viewers would */
static void on_finding(void *data, const bson_t *finding, const char *summary)
{
    (void)data;
    (void)summary;
    bson_free(mt_json_render(finding, false));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mt_stats_config_t cfg;
    mt_stats_t *st;
    mt_account_t *acct;
    mt_account_side_t sides[2][2]; /* [connection][request, reply] */
    mt_account_result_t owed;
    mt_stats_conn_t *conns[2];
    mt_wire_framer_t framer;
    uint64_t now = 1000000000ull;
    size_t off = 0, msg_start = 0;

    mt_stats_config_defaults(&cfg);
    cfg.n1_threshold = 2; /* small inputs should still reach the detector */
    cfg.max_shapes = 16;
    cfg.keep_windows = 2; /* closed windows age out and get pinned by findings */
    cfg.on_finding = on_finding;
    st = mt_stats_new(&cfg, now);
    if (!st)
        return 0;
    acct = mt_account_new(st);
    if (!acct) {
        mt_stats_free(st);
        return 0;
    }
    conns[0] = mt_stats_conn_open(st, 1, "127.0.0.1:1", now);
    conns[1] = mt_stats_conn_open(st, 2, "127.0.0.1:2", now);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            mt_account_side_init(&sides[i][j]);
    mt_wire_framer_init(&framer);

    while (off < size) {
        mt_frame_step_t step;
        mt_wire_framer_step(&framer, data + off, size - off, &step);
        if (step.event == MT_FRAME_ERROR || step.consumed == 0)
            break;
        if (step.event == MT_FRAME_HEADER && step.held == 0)
            msg_start = off;
        off += step.consumed;
        if ((step.event == MT_FRAME_HEADER || step.event == MT_FRAME_BODY) &&
            (step.flags & MT_FRAME_END)) {
            int32_t id = framer.hdr.request_id;
            int ci = (id >> 1) & 1, reply = id & 1;
            /* time advances by a few ms, sometimes past the window gap */
            now += (uint64_t)((id >> 2) & 0xff) * 1000000ull;
            /* delivered in two reads when bit 13 says so, to reach reassembly */
            size_t len = off - msg_start, cut = (id >> 13) & 1 ? len / 2 : len;
            mt_account_feed(acct, &sides[ci][reply], conns[ci], !reply, data + msg_start, cut, now,
                            &owed);
            if (cut < len)
                mt_account_feed(acct, &sides[ci][reply], conns[ci], !reply, data + msg_start + cut,
                                len - cut, now, &owed);
            if (((id >> 10) & 7) == 0)
                mt_stats_tick(st, now);
        }
    }
    mt_stats_conn_close(conns[0], now);
    mt_stats_tick(st, now + 1000000000ull);
    render_all(st, now);
    mt_stats_conn_close(conns[1], now);
    mt_stats_flush(st, now + 2000000000ull);
    render_all(st, now);
    mt_stats_reset(st);
    render_all(st, now);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            mt_account_side_release(acct, &sides[i][j]);
    mt_account_free(acct);
    mt_stats_free(st);
    return 0;
}
