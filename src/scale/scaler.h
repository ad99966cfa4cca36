/* imgcls scaler: the autoscaling controller (DESIGN.md §2, "scaler").
 *
 * Every --interval-ms: read the request queue's depth and the fleet's state, ask the policy
 * (policy.h), apply its decision to the fleet, and log one line per change with the policy's reason.
 * It writes its Prometheus metrics to --metrics-file (the textfile convention of node exporter), which
 * `imgcls web --extra-metrics` serves on /metrics, so one scrape shows the whole system. */
#ifndef IMGCLS_SCALE_SCALER_H
#define IMGCLS_SCALE_SCALER_H

int cli_scaler(int argc, char **argv);

#endif
