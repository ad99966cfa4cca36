/* The pure parts of the Auto Scaling fleet, for the unit tests and the fuzz targets (private to
 * src/fleet/ and tests). */
#ifndef IMGCLS_FLEET_FLEET_ASG_H
#define IMGCLS_FLEET_FLEET_ASG_H

#include "common/error.h"
#include "fleet/fleet.h"

#include <stddef.h>

#define ASG_MAX_GROUP 256
#define ASG_MAX_INSTANCE 32

/* "asg://<group>[?instance=<i-...>&protect_hold_s=<s>]": group 1..255 of [A-Za-z0-9._-]; instance the
 * calling worker's (without it, IMDS's instance-id); protect_hold_s 0..3600 (default 5). */
int fleet_asg_parse_url(const char *url, char group[ASG_MAX_GROUP], char instance[ASG_MAX_INSTANCE],
                        unsigned *hold_s, imgcls_errbuf *eb);

/* Reads a DescribeAutoScalingGroups answer for one group into out: desired from DesiredCapacity;
 * running = InService, busy = InService and ProtectedFromScaleIn, starting = Pending*, stopping =
 * Terminating* and Detaching; other states (Standby, Warmed:*) are not counted. rate and boot are 0 (not
 * measured by Auto Scaling). IMGCLS_ENOTFOUND when the answer holds no group, IMGCLS_ECORRUPT for a
 * malformed answer. */
int fleet_asg_parse_describe(const char *xml, size_t len, fleet_status *out, imgcls_errbuf *eb);

#endif
