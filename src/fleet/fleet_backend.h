/* The backends the fleet registry knows (private to src/fleet/). */
#ifndef IMGCLS_FLEET_FLEET_BACKEND_H
#define IMGCLS_FLEET_FLEET_BACKEND_H

#include "fleet/fleet.h"

extern const struct fleet_ops fleet_local_ops;
extern const struct fleet_ops fleet_asg_ops;

#endif
