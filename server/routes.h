/*
 * routes.h — the jiayin program's routes, as a list both route tables expand: routes.c (the
 * product) and tests/server/echo_routes.c (the same plus test-only routes).
 */
#ifndef JIAYIN_SERVER_ROUTES_H
#define JIAYIN_SERVER_ROUTES_H

#include "api.h"
#include "api_uploads.h"
#include "server.h"
#include "static.h"

#define SRV_JSON_BODY_MAX (16u * 1024) /* a JSON request body */
#define SRV_UPLOAD_MAX (200u << 20)     /* a recording: 15 min of 48 kHz stereo 16-bit WAV fits */

#define SRV_PRODUCT_ROUTES                                                                        \
	{"healthz", SRV_METHOD_GET, "/healthz", srv_handle_healthz, 0, SRV_ROUTE_HEAD_OK},         \
	{"metrics", SRV_METHOD_GET, "/metrics", srv_handle_metrics, 0, SRV_ROUTE_HEAD_OK},         \
	{"server.options", SRV_METHOD_OPTIONS, "*", srv_handle_options_any, 0, 0},                 \
	{"index", SRV_METHOD_GET, "/", srv_handle_index, 0, SRV_ROUTE_HEAD_OK},                    \
	{"assets", SRV_METHOD_GET, "/assets/{*path}", srv_handle_static, 0, SRV_ROUTE_HEAD_OK},    \
	{"families.create", SRV_METHOD_POST, "/v1/families", srv_api_families_create,              \
	 SRV_JSON_BODY_MAX, 0},                                                                    \
	{"me", SRV_METHOD_GET, "/v1/me", srv_api_me, 0, SRV_ROUTE_HEAD_OK},                        \
	{"members.list", SRV_METHOD_GET, "/v1/families/{family_id}/members", srv_api_members_list, \
	 0, SRV_ROUTE_HEAD_OK},                                                                    \
	{"members.add", SRV_METHOD_POST, "/v1/families/{family_id}/members", srv_api_member_add,  \
	 SRV_JSON_BODY_MAX, 0},                                                                    \
	{"members.update", SRV_METHOD_PATCH, "/v1/families/{family_id}/members/{member_id}",      \
	 srv_api_member_set, SRV_JSON_BODY_MAX, 0},                                                \
	{"members.remove", SRV_METHOD_DELETE, "/v1/families/{family_id}/members/{member_id}",    \
	 srv_api_member_remove, 0, 0},                                                             \
	{"devices.list", SRV_METHOD_GET, "/v1/families/{family_id}/devices", srv_api_devices_list, \
	 0, SRV_ROUTE_HEAD_OK},                                                                    \
	{"devices.delete", SRV_METHOD_DELETE, "/v1/devices/{device_id}", srv_api_device_delete, 0, \
	 0},                                                                                       \
	{"pairing_codes.create", SRV_METHOD_POST, "/v1/families/{family_id}/pairing-codes",       \
	 srv_api_pairing_code_create, SRV_JSON_BODY_MAX, 0},                                       \
	{"pair", SRV_METHOD_POST, "/v1/pair", srv_api_pair, SRV_JSON_BODY_MAX, 0},                \
	{"messages.upload", SRV_METHOD_POST, "/v1/families/{family_id}/messages",                 \
	 srv_api_message_upload, SRV_UPLOAD_MAX, SRV_ROUTE_BODY_CLAIM},                            \
	{"messages.list", SRV_METHOD_GET, "/v1/families/{family_id}/messages",                    \
	 srv_api_messages_list, 0, SRV_ROUTE_HEAD_OK},                                             \
	{"messages.audio", SRV_METHOD_GET, "/v1/families/{family_id}/messages/{message_id}/audio",\
	 srv_api_message_audio, 0, SRV_ROUTE_HEAD_OK},                                             \
	{"messages.audio_url", SRV_METHOD_POST,                                                   \
	 "/v1/families/{family_id}/messages/{message_id}/audio-url", srv_api_message_audio_url, 0, \
	 0},                                                                                       \
	{"audio.signed", SRV_METHOD_GET, "/v1/audio/{family_id}/{message_id}",                    \
	 srv_api_signed_audio, 0, SRV_ROUTE_HEAD_OK},                                              \
	{"messages.keep", SRV_METHOD_POST, "/v1/families/{family_id}/messages/{message_id}/keep",  \
	 srv_api_message_keep, 0, 0},                                                              \
	{"messages.unkeep", SRV_METHOD_DELETE,                                                     \
	 "/v1/families/{family_id}/messages/{message_id}/keep", srv_api_message_keep, 0, 0},       \
	{"families.get", SRV_METHOD_GET, "/v1/families/{family_id}", srv_api_family_get, 0,        \
	 SRV_ROUTE_HEAD_OK},                                                                       \
	{"families.set", SRV_METHOD_PATCH, "/v1/families/{family_id}", srv_api_family_set,        \
	 SRV_JSON_BODY_MAX, 0},                                                                    \
	{"families.delete", SRV_METHOD_DELETE, "/v1/families/{family_id}", srv_api_family_delete, \
	 0, 0},                                                                                    \
	{"families.export", SRV_METHOD_GET, "/v1/families/{family_id}/export",                    \
	 srv_api_family_export, 0, SRV_ROUTE_HEAD_OK},                                             \
	{"kiosk.codes", SRV_METHOD_POST, "/v1/kiosk/pairing-codes", srv_api_kiosk_code_create, 0,  \
	 0},                                                                                       \
	{"kiosk.children", SRV_METHOD_GET, "/v1/kiosk/children", srv_api_kiosk_children, 0,        \
	 SRV_ROUTE_HEAD_OK},                                                                       \
	{"kiosk.login", SRV_METHOD_POST, "/v1/kiosk/sessions", srv_api_kiosk_login,                \
	 SRV_JSON_BODY_MAX, 0},                                                                    \
	{"kiosk.logout", SRV_METHOD_DELETE, "/v1/kiosk/session", srv_api_kiosk_logout, 0, 0},      \
	{"kiosk_links.create", SRV_METHOD_POST, "/v1/families/{family_id}/kiosk-links",           \
	 srv_api_kiosk_link_create, SRV_JSON_BODY_MAX, 0},                                         \
	{"kiosk_links.list", SRV_METHOD_GET, "/v1/families/{family_id}/kiosk-links",              \
	 srv_api_kiosk_links_list, 0, SRV_ROUTE_HEAD_OK},                                          \
	{"kiosk_links.pin", SRV_METHOD_PUT, "/v1/families/{family_id}/kiosk-links/{link_id}/pin", \
	 srv_api_kiosk_link_pin, SRV_JSON_BODY_MAX, 0},                                            \
	{"kiosk_links.delete", SRV_METHOD_DELETE,                                                  \
	 "/v1/families/{family_id}/kiosk-links/{link_id}", srv_api_kiosk_link_delete, 0, 0},       \
	{"messages.listened", SRV_METHOD_POST,                                                     \
	 "/v1/families/{family_id}/messages/{message_id}/listened", srv_api_message_listened, 0,   \
	 0},                                                                                       \
	{"messages.delete", SRV_METHOD_DELETE, "/v1/families/{family_id}/messages/{message_id}",  \
	 srv_api_message_delete, 0, 0},                                                            \
	{"messages.flag", SRV_METHOD_POST, "/v1/families/{family_id}/messages/{message_id}/flag", \
	 srv_api_message_flag, SRV_JSON_BODY_MAX, 0},                                              \
	{"uploads.options", SRV_METHOD_OPTIONS, "/v1/uploads", srv_api_uploads_options, 0, 0},     \
	{"uploads.create", SRV_METHOD_POST, "/v1/uploads", srv_api_upload_create, 0, 0},           \
	{"uploads.head", SRV_METHOD_HEAD, "/v1/uploads/{upload_id}", srv_api_upload_head, 0, 0},   \
	{"uploads.get", SRV_METHOD_GET, "/v1/uploads/{upload_id}", srv_api_upload_get, 0, 0},      \
	{"uploads.patch", SRV_METHOD_PATCH, "/v1/uploads/{upload_id}", srv_api_upload_patch,       \
	 SRV_UPLOAD_MAX, SRV_ROUTE_BODY_CLAIM},                                                    \
	{"uploads.delete", SRV_METHOD_DELETE, "/v1/uploads/{upload_id}", srv_api_upload_delete, 0, \
	 0},                                                                                       \
	{"uploads.override", SRV_METHOD_POST, "/v1/uploads/{upload_id}", srv_api_upload_override,  \
	 SRV_UPLOAD_MAX, SRV_ROUTE_BODY_CLAIM}

#endif
