/*
 * api_uploads.h — resumable uploads, the tus 1.0.0 protocol under /v1/uploads (api_uploads.c).
 * docs/api.md, "Resumable uploads (tus 1.0)", is the contract.
 */
#ifndef JIAYIN_SERVER_API_UPLOADS_H
#define JIAYIN_SERVER_API_UPLOADS_H

#include "server.h"

void srv_api_uploads_options(srv_exchange *x); /* OPTIONS /v1/uploads: discovery */
void srv_api_upload_create(srv_exchange *x);   /* POST /v1/uploads */
void srv_api_upload_head(srv_exchange *x);     /* HEAD /v1/uploads/{id}: the offset */
void srv_api_upload_get(srv_exchange *x);      /* GET /v1/uploads/{id}: the same as JSON */
void srv_api_upload_patch(srv_exchange *x);    /* PATCH: bytes at the offset (a claimed body) */
void srv_api_upload_delete(srv_exchange *x);   /* DELETE: termination */
void srv_api_upload_override(srv_exchange *x); /* POST: X-HTTP-Method-Override PATCH or DELETE */

#endif
