/*
 * api.h — the v1 API's handlers (api.c, api_pairing.c, api_family.c, api_kiosk.c,
 * api_messages.c, api_poll.c): families, members, devices, pairing, kiosks, the mailbox.
 * docs/api.md is the contract.
 */
#ifndef JIAYIN_SERVER_API_H
#define JIAYIN_SERVER_API_H

#include "server.h"

#define SRV_TOKEN_BYTES 32 /* 256 random bits */

void srv_api_families_create(srv_exchange *x);
void srv_api_me(srv_exchange *x);
void srv_api_members_list(srv_exchange *x);
void srv_api_member_add(srv_exchange *x);
void srv_api_member_set(srv_exchange *x);
void srv_api_member_remove(srv_exchange *x);
void srv_api_devices_list(srv_exchange *x);
void srv_api_device_delete(srv_exchange *x);
void srv_api_pairing_code_create(srv_exchange *x);
void srv_api_pair(srv_exchange *x);
void srv_api_message_upload(srv_exchange *x);
void srv_api_messages_list(srv_exchange *x);
void srv_api_message_audio(srv_exchange *x);
void srv_api_message_audio_url(srv_exchange *x);
void srv_api_signed_audio(srv_exchange *x); /* GET /v1/audio/{family}/{message}?expires&sig */
void srv_api_message_listened(srv_exchange *x);
void srv_api_message_delete(srv_exchange *x);
void srv_api_message_flag(srv_exchange *x);
void srv_api_message_keep(srv_exchange *x);   /* POST and DELETE .../keep */
void srv_api_family_get(srv_exchange *x);
void srv_api_family_set(srv_exchange *x);
void srv_api_family_delete(srv_exchange *x);
void srv_api_family_export(srv_exchange *x);
void srv_api_kiosk_code_create(srv_exchange *x); /* api_kiosk.c */
void srv_api_kiosk_children(srv_exchange *x);
void srv_api_kiosk_login(srv_exchange *x);
void srv_api_kiosk_logout(srv_exchange *x);
void srv_api_kiosk_link_create(srv_exchange *x);
void srv_api_kiosk_links_list(srv_exchange *x);
void srv_api_kiosk_link_pin(srv_exchange *x);
void srv_api_kiosk_link_delete(srv_exchange *x);
/* The retention job's timer (api_family.c); the server closes it when it drains. */
void srv_api_retention_start(srv_server *s);
/* Every parked long-poll answers now (SIGTERM's drain). */
void srv_api_wake_all(srv_server *s);

#endif
