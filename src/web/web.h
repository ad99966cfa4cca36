/* imgcls web: the web tier (DESIGN.md §2, §3).
 *
 *   POST /            multipart/form-data, the image in field "myfile" -> 200 text/plain top-1 label
 *                     (JSON with Accept: application/json)
 *   GET /results/ID   a stored result;  GET /healthz;  GET /metrics (Prometheus text)
 *
 * It puts each upload in the input bucket under its file name, sends a request message to --queue, and
 * answers when a worker's response arrives on --reply-queue, which this instance owns. How the pieces
 * fit: web_server.h. */
#ifndef IMGCLS_WEB_WEB_H
#define IMGCLS_WEB_WEB_H

/* The subcommand: parses the options (--help lists them), serves until SIGINT or SIGTERM, and returns
 * the exit status: 0 after a clean stop, 2 for bad options or a failed start. */
int cli_web(int argc, char **argv);

#endif
