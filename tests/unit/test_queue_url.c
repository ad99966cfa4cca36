/* queue_url_is_sibling (src/queue/queue.h): the reply queues a request message may name. A forged
 * reply_to must not send a worker's answers to any queue, with any parameters. */
#include "queue/queue.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define HOME "sqlite:///d/imgcls.db?queue=requests&sync=normal"
#define SQS "https://sqs.us-east-1.amazonaws.com/123456789012/requests"

static void test_siblings(void **state)
{
    (void)state;
    static const struct {
        const char *home, *other;
        bool ok;
    } cases[] = {
        {HOME, "sqlite:///d/imgcls.db?queue=responses&sync=normal", true},
        {HOME, "sqlite:///d/imgcls.db?queue=responses-web2&sync=normal", true},
        {"fault:" HOME "#op=send&fail=2", "sqlite:///d/imgcls.db?queue=responses&sync=normal", true},
        {HOME, HOME, false},                                                       /* itself */
        {HOME, "sqlite:///d/imgcls.db?queue=requests-dlq&sync=normal", false},     /* a dead-letter queue */
        {HOME, "sqlite:///d/imgcls.db?queue=responses", false},                    /* other parameters */
        {HOME, "sqlite:///d/imgcls.db?queue=responses&sync=normal&busy_timeout_ms=999999", false},
        {HOME, "sqlite:///d/imgcls.db?sync=normal&queue=responses", false},
        {HOME, "sqlite:///d/imgcls.db?queue=responses&sync=normal&queue=requests", false},
        {HOME, "sqlite:///etc/imgcls.db?queue=responses&sync=normal", false},      /* another file */
        {HOME, "sqlite:///d/imgcls.db?queue=../x&sync=normal", false},
        {HOME, "sqlite:///d/imgcls.db?queue=&sync=normal", false},
        {HOME, "fault:sqlite:///d/imgcls.db?queue=responses&sync=normal", false},  /* picks fault injection */
        {HOME, "sqlite:///d/imgcls.db?queue=responses&sync=normal#x", false},
        {SQS, "https://sqs.us-east-1.amazonaws.com/123456789012/responses-1", true},
        {SQS, "https://sqs.us-east-1.amazonaws.com/210987654321/responses-1", false}, /* another account */
        {SQS, "https://sqs.us-east-1.amazonaws.com/123456789012/requests", false},
        {SQS, "https://sqs.us-east-1.amazonaws.com/123456789012/a/b", false},
        {SQS, "https://evil.example/123456789012/responses", false},
        {SQS, "", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (queue_url_is_sibling(cases[i].home, cases[i].other) != cases[i].ok)
            fail_msg("case %zu: %s next to %s: want %s", i, cases[i].other, cases[i].home,
                     cases[i].ok ? "allowed" : "refused");
    assert_false(queue_url_is_sibling(NULL, HOME));
    assert_false(queue_url_is_sibling(HOME, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siblings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
