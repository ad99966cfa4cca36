/* The pure parts of the AWS backends, by table: error answers and their classes, the credentials file,
 * IMDS's credentials document, URI encoding, and the URL and answer parsers of sqs, s3 and asg. What
 * they do against a real wire protocol is tests/aws (moto). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aws/aws.h"
#include "aws/aws_creds.h"
#include "aws/aws_error.h"
#include "fleet/fleet_asg.h"
#include "queue/queue_sqs.h"
#include "store/store_s3.h"

#include <string.h>

static void test_error_parse(void **state)
{
    (void)state;
    static const struct {
        const char *body, *code, *msg;
    } cases[] = {
        {"{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\",\"message\":\"The specified queue does not exist.\"}",
         "QueueDoesNotExist", "The specified queue does not exist."},
        {"{\"__type\":\"ThrottlingException\",\"Message\":\"slow down\"}", "ThrottlingException", "slow down"},
        {"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message><RequestId>R</RequestId></Error>",
         "NoSuchKey", "gone"},
        {"<ErrorResponse xmlns=\"https://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>Sender</Type>"
         "<Code>ValidationError</Code><Message>Group x not found</Message></Error><RequestId>1</RequestId>"
         "</ErrorResponse>",
         "ValidationError", "Group x not found"},
        {"<html>503 Service Unavailable</html>", "", ""},
        {"not an answer", "", ""},
        {"{\"__type\":\"bad code with spaces\"}", "", ""},
        {"{\"__type\":\"X\",\"message\":\"a \\\"quoted\\\"\\nline\"}", "X", "a  quoted  line"},
        {"", "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char code[AWS_MAX_CODE], msg[128];
        aws_error_parse(cases[i].body, strlen(cases[i].body), code, sizeof code, msg, sizeof msg);
        assert_string_equal(code, cases[i].code);
        assert_string_equal(msg, cases[i].msg);
    }
}

static void test_error_classes(void **state)
{
    (void)state;
    static const struct {
        long status;
        const char *code;
        bool retry;
        int rc;
    } cases[] = {
        {500, "InternalError", true, IMGCLS_EBACKEND},
        {503, "SlowDown", true, IMGCLS_EBUSY},
        {400, "ThrottlingException", true, IMGCLS_EBUSY},
        {400, "Throttling", true, IMGCLS_EBUSY},
        {429, "", true, IMGCLS_EBUSY},
        {400, "RequestTimeout", true, IMGCLS_EBACKEND},
        {404, "NoSuchKey", false, IMGCLS_ENOTFOUND},
        {404, "", false, IMGCLS_ENOTFOUND},
        {404, "NoSuchBucket", false, IMGCLS_EBACKEND}, /* configuration, not the request's key */
        {400, "QueueDoesNotExist", false, IMGCLS_ENOTFOUND},
        {400, "ValidationError", false, IMGCLS_EINVAL},
        {400, "InvalidParameterValue", false, IMGCLS_EINVAL},
        {413, "", false, IMGCLS_ETOOBIG},
        {400, "EntityTooLarge", false, IMGCLS_ETOOBIG},
        {403, "AccessDenied", false, IMGCLS_EBACKEND},
        {403, "SignatureDoesNotMatch", false, IMGCLS_EBACKEND},
        {400, "ReceiptHandleIsInvalid", false, IMGCLS_EBACKEND}, /* the sqs backend says ENOTFOUND */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(aws_error_retryable(cases[i].status, cases[i].code), cases[i].retry);
        assert_int_equal(aws_error_map(cases[i].status, cases[i].code), cases[i].rc);
    }
}

static void test_ini(void **state)
{
    (void)state;
    const char *t = "# comment\n[default]\naws_access_key_id = AKIADEFAULT\n\n[ prod ]\r\n"
                    "aws_access_key_id=AKIAPROD\n ; another\n  aws_secret_access_key =  s3cr3t/+= \t\n"
                    "[other]\naws_session_token = x\nnoequals\n";
    char v[32];
    assert_int_equal(aws_ini_get(t, strlen(t), "default", "aws_access_key_id", v, sizeof v), 1);
    assert_string_equal(v, "AKIADEFAULT");
    assert_int_equal(aws_ini_get(t, strlen(t), "prod", "aws_access_key_id", v, sizeof v), 1);
    assert_string_equal(v, "AKIAPROD");
    assert_int_equal(aws_ini_get(t, strlen(t), "prod", "aws_secret_access_key", v, sizeof v), 1);
    assert_string_equal(v, "s3cr3t/+=");
    assert_int_equal(aws_ini_get(t, strlen(t), "prod", "aws_session_token", v, sizeof v), 0);
    assert_int_equal(aws_ini_get(t, strlen(t), "missing", "aws_access_key_id", v, sizeof v), 0);
    char tiny[4];
    assert_int_equal(aws_ini_get(t, strlen(t), "prod", "aws_access_key_id", tiny, sizeof tiny), IMGCLS_ETOOBIG);
    assert_int_equal(aws_ini_get("[default", 8, "default", "k", v, sizeof v), 0);
}

static void test_imds_json(void **state)
{
    (void)state;
    aws_creds c;
    const char *ok = "{\"Code\":\"Success\",\"LastUpdated\":\"2026-12-02T16:00:00Z\",\"Type\":\"AWS-HMAC\","
                     "\"AccessKeyId\":\"ASIAX\",\"SecretAccessKey\":\"sec\",\"Token\":\"tok\","
                     "\"Expiration\":\"2026-12-02T22:00:00Z\"}";
    assert_int_equal(aws_creds_from_imds_json(ok, strlen(ok), &c, NULL), 0);
    assert_string_equal(c.access_key, "ASIAX");
    assert_string_equal(c.token, "tok");
    assert_int_equal(c.expires_s, 1796248800LL);
    assert_false(aws_creds_stale(&c, 1796248800LL - AWS_CREDS_REFRESH_S - 1));
    assert_true(aws_creds_stale(&c, 1796248800LL - AWS_CREDS_REFRESH_S));
    static const char *bad[] = {
        "{\"Code\":\"Failure\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":\"2026-12-02T22:00:00Z\"}",
        "{\"Code\":\"Success\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":\"tomorrow\"}",
        "{\"Code\":\"Success\",\"AccessKeyId\":\"A B\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":\"2026-12-02T22:00:00Z\"}",
        "{\"Code\":\"Success\",\"AccessKeyId\":\"A\"}",
        "[]",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(aws_creds_from_imds_json(bad[i], strlen(bad[i]), &c, NULL), IMGCLS_ECORRUPT);
    long long t;
    assert_int_equal(aws_parse_iso8601("1970-01-01T00:00:10Z", &t), 0);
    assert_int_equal(t, 10);
    assert_int_equal(aws_parse_iso8601("2026-13-01T00:00:00Z", &t), IMGCLS_EINVAL);
    assert_int_equal(aws_parse_iso8601("2026-12-01T00:00:00Zjunk", &t), IMGCLS_EINVAL);
}

static void test_uri_encode(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(aws_uri_encode("my dog+é%.jpg", false, out, sizeof out), 0);
    assert_string_equal(out, "my%20dog%2B%C3%A9%25.jpg");
    assert_int_equal(aws_uri_encode(".imgcls/results/ab.json", false, out, sizeof out), 0);
    assert_string_equal(out, ".imgcls/results/ab.json");
    assert_int_equal(aws_uri_encode("a/b~c", true, out, sizeof out), 0);
    assert_string_equal(out, "a%2Fb~c");
    char small[6];
    assert_int_equal(aws_uri_encode("abc d", false, small, sizeof small), IMGCLS_ETOOBIG);
}

static void test_sqs_url(void **state)
{
    (void)state;
    char origin[SQS_MAX_ORIGIN], account[SQS_MAX_ACCOUNT], name[SQS_MAX_NAME], region[32];
    assert_int_equal(queue_sqs_parse_url("https://sqs.eu-west-1.amazonaws.com/123456789012/requests", origin, account,
                                         name, region, NULL),
                     0);
    assert_string_equal(origin, "https://sqs.eu-west-1.amazonaws.com");
    assert_string_equal(account, "123456789012");
    assert_string_equal(name, "requests");
    assert_string_equal(region, "eu-west-1");
    assert_int_equal(queue_sqs_parse_url("http://127.0.0.1:5000/123456789012/resp-1_a", origin, account, name, region,
                                         NULL),
                     0);
    assert_string_equal(origin, "http://127.0.0.1:5000");
    assert_string_equal(region, "");
    static const char *bad[] = {
        "https://sqs.us-east-1.amazonaws.com/requests",          "https://sqs.us-east-1.amazonaws.com/12x/requests",
        "https://sqs.us-east-1.amazonaws.com/123/a/b",           "https://sqs.us-east-1.amazonaws.com/123/re%71",
        "https://sqs.us-east-1.amazonaws.com/123/requests?x=1", "ftp://host/123/requests",
        "https:///123/requests",                                 "https://user@host/123/requests",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(queue_sqs_parse_url(bad[i], origin, account, name, region, NULL), IMGCLS_EINVAL);
    assert_int_equal(queue_sqs_parse_url("https://sqs.us-east-1.amazonaws.com/123/jobs.fifo", origin, account, name,
                                         region, NULL),
                     IMGCLS_EUNSUPPORTED);
}

static void test_sqs_receive(void **state)
{
    (void)state;
    queue_msg m[QUEUE_MAX_BATCH];
    size_t n = 99;
    const char *two = "{\"Messages\":[{\"MessageId\":\"m1\",\"ReceiptHandle\":\"r1\",\"Body\":\"{\\\"v\\\":1}\","
                      "\"Attributes\":{\"ApproximateReceiveCount\":\"3\"}},{\"MessageId\":\"m2\",\"ReceiptHandle\":"
                      "\"r2\",\"Body\":\"a\\u00e9b\"}]}";
    assert_int_equal(queue_sqs_parse_receive(two, strlen(two), 10, m, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].id, "m1");
    assert_string_equal(m[0].receipt, "r1");
    assert_string_equal((char *)m[0].body, "{\"v\":1}");
    assert_int_equal(m[0].receive_count, 3);
    assert_int_equal(m[1].len, 4); /* JSON's escapes decoded: "a\xc3\xa9b" */
    assert_int_equal(m[1].receive_count, 1);
    queue_msg_free(&m[0]);
    queue_msg_free(&m[1]);
    assert_int_equal(queue_sqs_parse_receive("{}", 2, 10, m, &n, NULL), 0);
    assert_int_equal(n, 0);
    static const char *bad[] = {
        "{\"Messages\":{}}",
        "{\"Messages\":[{\"MessageId\":\"m1\",\"Body\":\"x\"}]}",
        "{\"Messages\":[{\"MessageId\":\"m1\",\"ReceiptHandle\":\"r\",\"Body\":\"x\",\"Attributes\":"
        "{\"ApproximateReceiveCount\":\"-1\"}}]}",
        "[1]",
        "{\"Messages\":[",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(queue_sqs_parse_receive(bad[i], strlen(bad[i]), 10, m, &n, NULL), IMGCLS_ECORRUPT);
        assert_int_equal(n, 0);
    }
    /* more than asked for is a broken answer, not a buffer overrun */
    assert_int_equal(queue_sqs_parse_receive(two, strlen(two), 1, m, &n, NULL), IMGCLS_ECORRUPT);
}

static void test_s3_url(void **state)
{
    (void)state;
    char bucket[S3_MAX_BUCKET], prefix[S3_MAX_PREFIX], url[512];
    s3_addressing a;
    assert_int_equal(store_s3_parse_url("s3://imgcls-in", bucket, prefix, &a, NULL), 0);
    assert_string_equal(bucket, "imgcls-in");
    assert_string_equal(prefix, "");
    assert_int_equal(a, S3_AUTO);
    assert_int_equal(store_s3_parse_url("s3://my.bucket/stage/in?addressing=path", bucket, prefix, &a, NULL), 0);
    assert_string_equal(prefix, "stage/in");
    assert_int_equal(a, S3_PATH);
    static const char *bad[] = {"s3://ab", "s3://Upper", "s3://-lead", "s3://a..b", "s3://ok-bucket/.hidden",
                                "s3://ok-bucket/a//b", "s3://ok-bucket?x=1", "file://x", "s3://ok-bucket/sp ace"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(store_s3_parse_url(bad[i], bucket, prefix, &a, NULL), IMGCLS_EINVAL);

    assert_int_equal(store_s3_object_url("http://127.0.0.1:5000", "in", "", "my dog+é.jpg", false, url, sizeof url), 0);
    assert_string_equal(url, "http://127.0.0.1:5000/in/my%20dog%2B%C3%A9.jpg");
    assert_int_equal(store_s3_object_url("https://s3.us-east-1.amazonaws.com", "in", "p/q", ".imgcls/claims/ab", true,
                                         url, sizeof url),
                     0);
    assert_string_equal(url, "https://in.s3.us-east-1.amazonaws.com/p/q/.imgcls/claims/ab");
    assert_int_equal(store_s3_object_url("http://127.0.0.1:5000", "in", "", NULL, false, url, sizeof url), 0);
    assert_string_equal(url, "http://127.0.0.1:5000/in");
    assert_int_equal(store_s3_object_url("https://s3.x.amazonaws.com", "in", "", NULL, true, url, sizeof url), 0);
    assert_string_equal(url, "https://in.s3.x.amazonaws.com/");
}

static void test_asg(void **state)
{
    (void)state;
    char group[ASG_MAX_GROUP], inst[ASG_MAX_INSTANCE];
    unsigned hold;
    assert_int_equal(fleet_asg_parse_url("asg://stack-workers", group, inst, &hold, NULL), 0);
    assert_string_equal(group, "stack-workers");
    assert_string_equal(inst, "");
    assert_int_equal(hold, 5);
    assert_int_equal(fleet_asg_parse_url("asg://g?instance=i-0123456789abcdef0&protect_hold_s=0", group, inst, &hold,
                                         NULL),
                     0);
    assert_string_equal(inst, "i-0123456789abcdef0");
    assert_int_equal(hold, 0);
    static const char *bad[] = {"asg://", "asg://a b", "asg://g?instance=x-1", "asg://g?protect_hold_s=99999",
                                "asg://g?other=1", "local://g"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(fleet_asg_parse_url(bad[i], group, inst, &hold, NULL), IMGCLS_EINVAL);

    const char *xml =
        "<DescribeAutoScalingGroupsResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">"
        "<DescribeAutoScalingGroupsResult><AutoScalingGroups><member><AutoScalingGroupName>g</AutoScalingGroupName>"
        "<DesiredCapacity>4</DesiredCapacity><Instances>"
        "<member><InstanceId>i-1</InstanceId><LifecycleState>InService</LifecycleState>"
        "<ProtectedFromScaleIn>true</ProtectedFromScaleIn></member>"
        "<member><InstanceId>i-2</InstanceId><LifecycleState>InService</LifecycleState>"
        "<ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>"
        "<member><InstanceId>i-3</InstanceId><LifecycleState>Pending:Wait</LifecycleState></member>"
        "<member><InstanceId>i-4</InstanceId><LifecycleState>Terminating</LifecycleState></member>"
        "<member><InstanceId>i-5</InstanceId><LifecycleState>Standby</LifecycleState></member>"
        "</Instances></member></AutoScalingGroups></DescribeAutoScalingGroupsResult></DescribeAutoScalingGroupsResponse>";
    fleet_status st;
    assert_int_equal(fleet_asg_parse_describe(xml, strlen(xml), &st, NULL), 0);
    assert_int_equal(st.desired, 4);
    assert_int_equal(st.running, 2);
    assert_int_equal(st.busy, 1);
    assert_int_equal(st.starting, 1);
    assert_int_equal(st.stopping, 1);
    const char *none = "<R><DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult></R>";
    assert_int_equal(fleet_asg_parse_describe(none, strlen(none), &st, NULL), IMGCLS_ENOTFOUND);
    static const char *bad_xml[] = {"<R/>", "<R><AutoScalingGroups><member><DesiredCapacity>x</DesiredCapacity>"
                                        "</member></AutoScalingGroups></R>",
                                "<unclosed>", "plain text"};
    for (size_t i = 0; i < sizeof bad_xml / sizeof *bad_xml; i++)
        assert_int_equal(fleet_asg_parse_describe(bad_xml[i], strlen(bad_xml[i]), &st, NULL), IMGCLS_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_parse), cmocka_unit_test(test_error_classes), cmocka_unit_test(test_ini),
        cmocka_unit_test(test_imds_json),   cmocka_unit_test(test_uri_encode),    cmocka_unit_test(test_sqs_url),
        cmocka_unit_test(test_sqs_receive), cmocka_unit_test(test_s3_url),        cmocka_unit_test(test_asg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
