/* The EC2 Auto Scaling fleet (contract in fleet.h; requests in aws/aws.h), in Auto Scaling's query
 * protocol:
 *   describe     DescribeAutoScalingGroups
 *   set_desired  SetDesiredCapacity with HonorCooldown=false: the scaler's policy is the cooldown
 *   report       SetInstanceProtection on the worker's own instance
 *
 * Safe scale-in is scale-in protection: a worker protects its instance as soon as it holds messages and
 * lifts the protection only after protect_hold_s idle, so that Auto Scaling, which never picks a
 * protected instance when it lowers the desired count, takes idle instances only. The hold keeps a
 * worker that receives a batch a second from making two calls a second. Rejected: a lifecycle hook
 * (moto does not implement CompleteLifecycleAction, so it could not be tested here) and the scaler
 * choosing victims with TerminateInstanceInAutoScalingGroup (it would need each worker's busy state,
 * which only the worker knows; protection carries it to Auto Scaling, and to describe's busy count). */
#include "fleet/fleet_asg.h"

#include "aws/aws.h"
#include "aws/aws_xml.h"
#include "common/clock.h"
#include "common/url.h"
#include "fleet/fleet_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASG_API_VERSION "2011-01-01"
#define ASG_DEFAULT_HOLD_S 5

typedef struct asg_fleet {
    fleet base;
    aws_client *c;
    char group[ASG_MAX_GROUP];
    char instance[ASG_MAX_INSTANCE];
    unsigned hold_s;
    int protected_state;  /* -1 unknown, 0 off, 1 on */
    double idle_since_ms; /* 0: busy, or not idle yet */
    double imds_retry_ms; /* after a failed instance-id lookup, the next one waits until then */
} asg_fleet;

static bool group_ok(const char *g, size_t n)
{
    if (n == 0 || n >= ASG_MAX_GROUP)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((g[i] >= 'a' && g[i] <= 'z') || (g[i] >= 'A' && g[i] <= 'Z') || (g[i] >= '0' && g[i] <= '9') ||
              g[i] == '.' || g[i] == '_' || g[i] == '-'))
            return false;
    return true;
}

static bool instance_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 10 && n <= 19 && strncmp(s, "i-", 2) == 0 && strspn(s + 2, "0123456789abcdef") == n - 2;
}

int fleet_asg_parse_url(const char *url, char group[ASG_MAX_GROUP], char instance[ASG_MAX_INSTANCE],
                        unsigned *hold_s, imgcls_errbuf *eb)
{
    instance[0] = 0;
    *hold_s = ASG_DEFAULT_HOLD_S;
    if (strncmp(url, "asg://", 6) != 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "asg: '%.200s' is not an asg:// URL", url);
    const char *g = url + 6, *q = strchr(g, '?');
    size_t gn = q ? (size_t)(q - g) : strlen(g);
    if (!group_ok(g, gn))
        return imgcls_fail(eb, IMGCLS_EINVAL, "asg: the group in '%.200s' is not 1..255 of [A-Za-z0-9._-]", url);
    snprintf(group, ASG_MAX_GROUP, "%.*s", (int)gn, g);
    const char *cur = q ? q + 1 : "";
    char key[32], val[64];
    int r;
    while ((r = url_param_next(&cur, key, sizeof key, val, sizeof val)) == 1) {
        unsigned long v;
        if (strcmp(key, "instance") == 0 && instance_ok(val)) {
            memcpy(instance, val, strlen(val) + 1); /* instance_ok: at most 19 characters */
        } else if (strcmp(key, "protect_hold_s") == 0 && url_parse_ulong(val, 0, 3600, &v) == 0) {
            *hold_s = (unsigned)v;
        } else {
            return imgcls_fail(eb, IMGCLS_EINVAL, "asg: bad parameter %s=%s (instance=i-<hex>, protect_hold_s=0..3600)",
                               key, val);
        }
    }
    return r < 0 ? imgcls_fail(eb, IMGCLS_EINVAL, "asg: malformed query in '%.200s'", url) : 0;
}

static int parse_u32(const aws_xml_node *n, const char *name, uint32_t *out)
{
    char t[16];
    unsigned long v;
    if (aws_xml_text(n, name, t, sizeof t) || url_parse_ulong(t, 0, 100000, &v))
        return IMGCLS_ECORRUPT;
    *out = (uint32_t)v;
    return 0;
}

static void count_instance(const aws_xml_node *m, fleet_status *out)
{
    char state[48] = "", prot[8] = "";
    aws_xml_text(m, "LifecycleState", state, sizeof state);
    aws_xml_text(m, "ProtectedFromScaleIn", prot, sizeof prot);
    if (strcmp(state, "InService") == 0) {
        out->running++;
        out->busy += strcmp(prot, "true") == 0;
    } else if (strncmp(state, "Pending", 7) == 0) {
        out->starting++;
    } else if (strncmp(state, "Terminating", 11) == 0 || strcmp(state, "Detaching") == 0) {
        out->stopping++;
    }
}

int fleet_asg_parse_describe(const char *xml, size_t len, fleet_status *out, imgcls_errbuf *eb)
{
    memset(out, 0, sizeof *out);
    aws_xml_doc *d = aws_xml_parse(xml, len, eb);
    if (!d)
        return IMGCLS_ECORRUPT;
    const aws_xml_node *groups = aws_xml_find(aws_xml_root(d), "AutoScalingGroups");
    const aws_xml_node *g = aws_xml_child(groups, "member");
    int rc = 0;
    if (!groups)
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "asg: DescribeAutoScalingGroups answered without AutoScalingGroups");
    else if (!g)
        rc = imgcls_fail(eb, IMGCLS_ENOTFOUND, "asg: no such group");
    else if (parse_u32(g, "DesiredCapacity", &out->desired))
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "asg: the group has no valid DesiredCapacity");
    size_t seen = 0;
    for (const aws_xml_node *m = rc ? NULL : aws_xml_child(aws_xml_child(g, "Instances"), "member"); m;
         m = aws_xml_next(m)) {
        if (++seen > 100000) {
            rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "asg: implausibly many instances");
            break;
        }
        count_instance(m, out);
    }
    aws_xml_free(d);
    return rc;
}

/* Sends action with the form parameters params ("Name=value&..." already encoded). resp is freed here;
 * the answer, when wanted, goes to *xml (caller frees with buf_free). */
static int asg_call(asg_fleet *f, const char *action, const char *params, imgcls_buf *xml)
{
    imgcls_buf body;
    buf_init(&body, 8192);
    int rc = buf_printf(&body, "Action=%s&Version=%s&%s", action, ASG_API_VERSION, params);
    if (rc) {
        buf_free(&body);
        return imgcls_fail(&f->base.err, rc, "asg %s: request too large", action);
    }
    aws_response resp;
    rc = aws_call(f->c, &(aws_request){.op = action, .method = "POST", .body = body.data, .len = body.len,
                                       .content_type = "application/x-www-form-urlencoded; charset=utf-8",
                                       .max_response = (size_t)4 << 20},
                  &resp);
    buf_free(&body);
    if (rc)
        imgcls_fail(&f->base.err, rc, "asg %s: %s", f->group, aws_client_error(f->c));
    if (!rc && xml) {
        *xml = resp.body;
        buf_init(&resp.body, 0);
    }
    aws_response_free(&resp);
    return rc;
}

static void asg_close(fleet *fb)
{
    asg_fleet *f = (asg_fleet *)fb;
    if (!f)
        return;
    aws_client_close(f->c);
    free(f);
}

static int asg_open(const char *url, fleet **out, imgcls_errbuf *eb)
{
    *out = NULL;
    asg_fleet *f = calloc(1, sizeof *f);
    if (!f)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "asg: out of memory");
    f->base.ops = &fleet_asg_ops;
    f->protected_state = -1;
    int rc = fleet_asg_parse_url(url, f->group, f->instance, &f->hold_s, eb);
    if (!rc)
        rc = aws_client_open(AWS_AUTOSCALING, NULL, &f->c, eb);
    if (rc) {
        asg_close(&f->base);
        return rc;
    }
    *out = &f->base;
    return 0;
}

static int asg_describe(fleet *fb, fleet_status *out)
{
    asg_fleet *f = (asg_fleet *)fb;
    char params[600];
    snprintf(params, sizeof params, "AutoScalingGroupNames.member.1=%s", f->group); /* group_ok: needs no encoding */
    imgcls_buf xml;
    buf_init(&xml, 0);
    int rc = asg_call(f, "DescribeAutoScalingGroups", params, &xml);
    if (!rc && (rc = fleet_asg_parse_describe((const char *)xml.data, xml.len, out, &f->base.err)) == IMGCLS_ENOTFOUND)
        imgcls_fail(&f->base.err, rc, "asg: group %s does not exist", f->group);
    buf_free(&xml);
    return rc;
}

static int asg_set_desired(fleet *fb, uint32_t n)
{
    asg_fleet *f = (asg_fleet *)fb;
    char params[600];
    snprintf(params, sizeof params, "AutoScalingGroupName=%s&DesiredCapacity=%u&HonorCooldown=false", f->group, n);
    return asg_call(f, "SetDesiredCapacity", params, NULL);
}

static int set_protection(asg_fleet *f, bool on)
{
    char params[700];
    snprintf(params, sizeof params, "AutoScalingGroupName=%s&InstanceIds.member.1=%s&ProtectedFromScaleIn=%s", f->group,
             f->instance, on ? "true" : "false");
    int rc = asg_call(f, "SetInstanceProtection", params, NULL);
    if (!rc)
        f->protected_state = on;
    return rc;
}

static int asg_report(fleet *fb, bool busy, uint32_t images, double busy_s)
{
    asg_fleet *f = (asg_fleet *)fb;
    (void)images;
    (void)busy_s; /* Auto Scaling keeps no rate; the scaler plans with --default-rate */
    if (!f->instance[0]) {
        /* Off EC2 every lookup costs IMDS's timeout: one a minute, not one a receive. */
        if (clock_ms() < f->imds_retry_ms)
            return imgcls_fail(&f->base.err, IMGCLS_EINVAL, "asg: this worker names no instance");
        char id[64] = "";
        imgcls_errbuf ie = {{0}};
        if (aws_client_imds_get(f->c, "meta-data/instance-id", id, sizeof id, &ie) || !instance_ok(id)) {
            f->imds_retry_ms = clock_ms() + 60000.0;
            return imgcls_fail(&f->base.err, IMGCLS_EINVAL, "asg: this worker names no instance (no ?instance= and "
                               "none from IMDS: %.100s)", ie.msg[0] ? ie.msg : id);
        }
        memcpy(f->instance, id, strlen(id) + 1); /* instance_ok: at most 19 characters */
    }
    if (busy) {
        f->idle_since_ms = 0;
        return f->protected_state == 1 ? 0 : set_protection(f, true);
    }
    double now = clock_ms();
    if (f->idle_since_ms == 0)
        f->idle_since_ms = now;
    if (f->protected_state != 0 && now - f->idle_since_ms >= f->hold_s * 1000.0)
        return set_protection(f, false);
    return 0;
}

const struct fleet_ops fleet_asg_ops = {
    .scheme = "asg",
    .open = asg_open,
    .close = asg_close,
    .describe = asg_describe,
    .set_desired = asg_set_desired,
    .report = asg_report,
};
