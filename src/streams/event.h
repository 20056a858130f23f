/* Domain events (seed 002) against a stream's event entries: which entries an event
 * matches (namespace, name, criteria) and what a subscriber sees of it (the projection
 * `map`). Pure functions over jansson values. */
#ifndef PG_STREAM_EVENT_H
#define PG_STREAM_EVENT_H

#include <jansson.h>
#include <stddef.h>

/* Checks an ingested event {namespace, name, timestamp, correlationId?, context?,
 * payload}. Writes a message naming the field into err. Returns 0 or -EINVAL. */
int event_validate(json_t *ev, char *err, size_t errlen);

/* Tells whether ev satisfies criteria (NULL or {} always do): `correlationId` equal
 * to the event's, `context` a subset of the event's context (each key present with an
 * equal value). Returns 1 or 0. */
int event_criteria_hold(json_t *criteria, json_t *ev);

/* Finds the value at path in doc: keys separated by '.', array elements by index
 * ("payload.items.0.id"). Returns a borrowed value or NULL. */
json_t *event_path_get(json_t *doc, const char *path);

/* Projects ev through map ({"out": "path", …}); NULL or {} gives the whole event.
 * Keys whose path is missing are left out. Returns a new reference or NULL. */
json_t *event_project(json_t *map, json_t *ev);

#endif
