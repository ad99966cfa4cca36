/* AWS error answers (contract in aws_error.h). The code lists follow the AWS SDKs' retry handlers
 * (botocore's retryhandler and standard retry mode), trimmed to the services imgcls calls. */
#include "aws/aws_error.h"

#include "aws/aws_xml.h"
#include "common/error.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static bool in_list(const char *code, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(code, *list) == 0)
            return true;
    return false;
}

static const char *const THROTTLING[] = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "BandwidthLimitExceeded", "RequestThrottled",
    "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException", "AWS.SimpleQueueService.RequestThrottled",
    "RequestThrottled", NULL};
static const char *const TRANSIENT[] = {"RequestTimeout", "RequestTimeoutException", "InternalError",
                                        "InternalFailure", "ServiceUnavailable", "InternalServerError",
                                        "AWS.SimpleQueueService.ServiceUnavailable", NULL};
static const char *const NOT_FOUND[] = {"NoSuchKey", "NotFound", "QueueDoesNotExist",
                                        "AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue",
                                        "ResourceNotFound", "ResourceNotFoundException", NULL};
static const char *const INVALID[] = {"ValidationError", "ValidationException", "InvalidParameterValue",
                                      "InvalidParameterCombination", "InvalidParameterValueException",
                                      "MissingParameter", "InvalidAttributeValue", "InvalidArgument",
                                      "KeyTooLongError", "InvalidBucketName", "InvalidMessageContents",
                                      "MalformedXML", "InvalidAddress", NULL};
static const char *const TOO_BIG[] = {"EntityTooLarge", "MessageTooLong", "BatchRequestTooLong",
                                      "RequestEntityTooLarge", NULL};

bool aws_error_throttled(const char *code)
{
    return code && *code && in_list(code, THROTTLING);
}

bool aws_error_retryable(long status, const char *code)
{
    if (status >= 500 || status == 429 || status == 0)
        return true;
    return code && *code && (in_list(code, THROTTLING) || in_list(code, TRANSIENT));
}

int aws_error_map(long status, const char *code)
{
    if (!code)
        code = "";
    if (aws_error_throttled(code) || status == 429)
        return IMGCLS_EBUSY;
    if (in_list(code, NOT_FOUND) || (status == 404 && !*code))
        return IMGCLS_ENOTFOUND;
    if (in_list(code, TOO_BIG) || status == 413)
        return IMGCLS_ETOOBIG;
    if (in_list(code, INVALID))
        return IMGCLS_EINVAL;
    return IMGCLS_EBACKEND;
}

static void copy_trunc(char *dst, size_t dstsz, const char *src)
{
    if (dstsz)
        snprintf(dst, dstsz, "%s", src ? src : "");
}

static bool parse_json(const char *body, size_t len, char *code, size_t codesz, char *msg, size_t msgsz)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return false;
    }
    const char *type = json_string_value(json_object_get(doc, "__type"));
    if (!type)
        type = json_string_value(json_object_get(doc, "code"));
    const char *m = json_string_value(json_object_get(doc, "message"));
    if (!m)
        m = json_string_value(json_object_get(doc, "Message"));
    if (type && strchr(type, '#'))
        type = strchr(type, '#') + 1;
    copy_trunc(code, codesz, type);
    copy_trunc(msg, msgsz, m);
    json_decref(doc);
    return true;
}

static void parse_xml(const char *body, size_t len, char *code, size_t codesz, char *msg, size_t msgsz)
{
    aws_xml_doc *d = aws_xml_parse(body, len, NULL);
    const aws_xml_node *root = aws_xml_root(d), *err = NULL;
    if (root)
        err = aws_xml_child(root, "Code") ? root : aws_xml_find(root, "Error"); /* S3 : query protocol */
    if (err) {
        if (aws_xml_text(err, "Code", code, codesz))
            code[0] = 0;
        if (aws_xml_text(err, "Message", msg, msgsz))
            msg[0] = 0;
    }
    aws_xml_free(d);
}

void aws_error_parse(const char *body, size_t len, char *code, size_t codesz, char *msg, size_t msgsz)
{
    copy_trunc(code, codesz, "");
    copy_trunc(msg, msgsz, "");
    if (!body || !len || codesz == 0 || msgsz == 0)
        return;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i < len && body[i] == '{')
        parse_json(body + i, len - i, code, codesz, msg, msgsz);
    else if (i < len && body[i] == '<')
        parse_xml(body + i, len - i, code, codesz, msg, msgsz);
    /* Codes are identifiers; anything else in one is not a code. */
    for (char *p = code; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-' || *p == ':')) {
            code[0] = 0;
            break;
        }
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"')
            *p = ' '; /* the message goes into a key="value" log line */
}
