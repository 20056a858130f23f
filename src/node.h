/* A running node: config → auth, hub, bus, workers; SIGTERM → graceful stop. */
#ifndef PG_NODE_H
#define PG_NODE_H

#include "core/config.h"

/* Runs a node until SIGTERM/SIGINT. Returns the process exit code. */
int node_run(config_t *cfg);

#endif
