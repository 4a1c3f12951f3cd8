/** The local API's size limits, in a module of their own so that thin clients load no zod. */

/** Largest request body the daemon reads; a bigger one is refused with 413 before it is read. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Requests per batch (`decide`, `check`) and events per `events` call. */
export const MAX_BATCH = 1024;
/** Largest single event a client may append, as JSON. */
export const MAX_EVENT_BYTES = 8 * 1024 * 1024;
