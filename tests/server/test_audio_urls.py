#!/usr/bin/env python3
"""test_audio_urls.py — signed audio URLs end to end (TAP).

usage: test_audio_urls.py JIAYIN_BINARY

What docs/api.md promises for POST .../audio-url and GET /v1/audio/...: a URL that plays
without a header (ranges too) until it expires, cached no longer than it lives, refused when
changed in any part, the server's key (data/secret: its mode, a restart, a link to it, a
damaged or missing or different key), and a kiosk session's URL (sealed, no-store, ended with
the session), and a clip fetched in the second it was stored dated no later than its answer.
A phone's URL ending with its phone is in test_members.py.
"""
import json
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # test_api's helpers are imported: no __pycache__ in the tree
from serverlib import Server, add_kiosk, logged_id, request  # noqa: E402
from tap import finish, ok  # noqa: E402
from test_api import SAMPLE, bearer, invite_and_pair, post_json, signup, upload  # noqa: E402


def signed_urls(binary):
    """POST .../audio-url: a short-lived URL an <audio> element plays without headers."""
    import sqlite3
    import stat
    import time
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary, "--audio-url-ttl-s", "3")
    data = srv.data
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        kid = invite_and_pair(srv, mom, "child", "小明")
        ok("token" in kid, "pairing codes work under their keyed hash")
        code2 = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                          {"role": "child", "member_name": "小红"},
                          headers=bearer(mom["token"])).json()["code"]
        sib = post_json(srv, "/v1/pair", {"code": code2}).json()
        mid = upload(srv, mom["token"], fam, wav, to=kid["member"]["id"]).json()["message"]["id"]
        full = request(srv, "GET", f"/v1/families/{fam}/messages/{mid}/audio",
                       headers=bearer(kid["token"])).body
        r = request(srv, "POST", f"/v1/families/{fam}/messages/{mid}/audio-url", b"",
                    headers=bearer(kid["token"]))
        u = r.json() if r.status == 200 else {}
        now = time.time()
        ok(r.status == 200 and u["url"].startswith(f"/v1/audio/{fam}/{mid}?") and
           now + 1 < u["expires_at"] <= now + 4,
           "audio-url: 200 with a URL bound to the message and its expiry", r.body[:200])
        url = u.get("url", "/")
        a = request(srv, "GET", url)
        ok(a.status == 200 and a.body == full and a.header("Content-Type") == "audio/ogg",
           "the URL plays without an Authorization header: the same bytes")
        cc = a.header("Cache-Control") or ""
        m = re.fullmatch(r"private, max-age=(\d+)", cc)
        ok(m and int(m.group(1)) <= 3,
           "and may be cached no longer than the link lives (a shared kiosk's browser)", cc)
        rg = request(srv, "GET", url, headers=[("Range", "bytes=100-199")])
        ok(rg.status == 206 and rg.body == full[100:200], "and seeks (Range) like the API's")
        sig = url.split("sig=")[1]
        flip = sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:]
        exp = url.split("expires=")[1].split("&")[0]
        tampered = {
            "a changed signature": url.replace(sig, flip),
            "a later expiry": url.replace(f"expires={exp}", f"expires={int(exp) + 3600}"),
            "another message": url.replace(mid, mid[:-1] + ("a" if mid[-1] != "a" else "b")),
            "no signature": url.split("&sig=")[0],
            "no query": url.split("?")[0],
            "a signature with extra bytes": url + "x",
        }
        for what, bad in tampered.items():
            b = request(srv, "GET", bad)
            ok(b.status == 403 and b.json()["error"]["code"] == "invalid_signature",
               f"{what}: 403 invalid_signature", f"{b.status} {b.body[:120]!r}")
        # A client that percent-encodes the URL's '?' (or the whole URL, taken relative to its
        # page; or the URL encoded twice, its '?' as %253F) sends the query in the path:
        # refused, and its signature and sealed phone are not written to the request log,
        # which never names a query (docs/server.md).
        ref = url.split("phone=")[1].split("&")[0]
        mangled = [request(srv, "GET", m) for m in (
            url.replace("?", "%3F", 1), url.replace("?", "%3f", 1),
            url.replace("?", "%253F", 1),
            "/" + urllib.parse.quote(urllib.parse.quote(url, safe=""), safe=""),
            "/" + urllib.parse.quote(url, safe=""))]
        log = srv.wait_log(logged_id(mangled[-1]))
        ok([m.status for m in mangled] == [403, 403, 403, 404, 404] and sig not in log and
           ref not in log and f"/v1/audio/{fam}/{mid}" in log,
           "a URL whose '?' came percent-encoded: refused, and the log names its path "
           "without the signature", f"{[m.status for m in mangled]} "
           f"{[ln for ln in log.splitlines() if sig in ln or ref in ln][:2]}")
        ok(request(srv, "POST", f"/v1/families/{fam}/messages/{mid}/audio-url", b"",
                   headers=bearer(sib["token"])).status == 404 and
           request(srv, "POST", f"/v1/families/{fam}/messages/{mid}/audio-url", b"").status
           == 401, "no URL for a sibling's private message (404) or without a token (401)")
        time.sleep(max(0, u.get("expires_at", 0) - time.time()) + 1.1)
        e = request(srv, "GET", url)
        ok(e.status == 403 and e.json()["error"]["code"] == "url_expired",
           "after its expiry: 403 url_expired")
        u2 = request(srv, "POST", f"/v1/families/{fam}/messages/{mid}/audio-url", b"",
                     headers=bearer(mom["token"])).json()["url"]
        srv.stop()
        mode = stat.S_IMODE(os.stat(os.path.join(data, "secret")).st_mode)
        ok(mode == 0o600 and os.path.getsize(os.path.join(data, "secret")) == 32,
           "the server's key is 32 bytes in data/secret, readable by its owner only")
        os.chmod(os.path.join(data, "secret"), 0o644)  # as a plain `cp` restores it
        srv = Server(binary, "--audio-url-ttl-s", "3", data=data)
        mode = stat.S_IMODE(os.stat(os.path.join(data, "secret")).st_mode)
        ok(mode == 0o600 and "was readable by others (mode 0644); it is 0600 now" in
           srv.log_text(), "a key others can read is made 0600 again at start, and said so",
           srv.log_text()[-300:])
        ok(request(srv, "GET", u2).status == 200,
           "a URL signed before a restart still plays: the key persists")
        request(srv, "DELETE", f"/v1/families/{fam}/messages/{mid}",
                headers=bearer(mom["token"]))
        ok(request(srv, "GET", u2).status == 404, "a deleted message's URL: 404")
        srv.stop()
        # A key mounted from elsewhere (a container's secret) is a symbolic link: followed.
        key = os.path.join(data, "secret")
        os.rename(key, key + ".mounted")
        os.symlink(key + ".mounted", key)
        try:
            srv = Server(binary, data=data)
            ok(request(srv, "GET", "/healthz").status == 200,
               "a key that is a symbolic link to the key is used")
            srv.stop()
        except RuntimeError as ex:
            ok(False, "a key that is a symbolic link to the key is used", str(ex)[-300:])
        os.unlink(key)
        os.rename(key + ".mounted", key)
        with open(os.path.join(data, "secret"), "wb") as f:
            f.write(b"short")
        try:
            Server(binary, data=data).stop()
            said = ""
        except RuntimeError as ex:
            said = str(ex)
        ok("data/secret" in said and "restore it from the backup" in said and
           "JIAYIN_NEW_KEY=1" in said,
           "a damaged key file stops the start, saying what to do (the review: only "
           "'Invalid argument')", said[-300:])
        os.unlink(os.path.join(data, "secret"))
        try:
            Server(binary, data=data).stop()
            refused = ""
        except RuntimeError as ex:
            refused = str(ex)
        ok("is missing, but this data directory was made with one" in refused and
           not os.path.exists(os.path.join(data, "secret")),
           "a data directory whose key is gone: no new key, a clear refusal "
           "(kiosk PINs depend on it)", refused[-300:])
        with open(os.path.join(data, "secret"), "wb") as f:
            f.write(os.urandom(32))
        try:
            Server(binary, data=data).stop()
            refused = ""
        except RuntimeError as ex:
            refused = str(ex)
        ok("is not the key this data directory was made with" in refused,
           "another key in its place: refused too", refused[-300:])

        def start_with_new_key(value):  # the server's stderr, or the refusal
            os.environ["JIAYIN_NEW_KEY"] = value
            try:
                srv = Server(binary, data=data)
                srv.stop()
                return srv.log_text()
            except RuntimeError as ex:
                return "refused: " + str(ex)
            finally:
                del os.environ["JIAYIN_NEW_KEY"]
        # Any value used to start over (JIAYIN_NEW_KEY=0 took the wrong key): only 1 does.
        text = start_with_new_key("0")
        ok(text.startswith("refused") and "is not the key" in text and
           "JIAYIN_NEW_KEY is ignored" in text,
           "JIAYIN_NEW_KEY=0 is not a yes: the wrong key is still refused", text[-300:])
        text = start_with_new_key("1")
        ok("started over with a new server key" in text and "Remove" in text,
           "JIAYIN_NEW_KEY=1 starts over with this key, and says to remove the variable",
           text[-300:])
        srv = Server(binary, data=data)
        ok(request(srv, "GET", "/healthz").status == 200,
           "started once with JIAYIN_NEW_KEY=1, the new key is the directory's from then on")
        srv.stop()
        text = start_with_new_key("1")
        ok("nothing was replaced" in text,
           "JIAYIN_NEW_KEY=1 left set with the right key replaces nothing, and says so",
           text[-300:])
        # A damaged key, knowingly replaced: it used to stop the start even with the variable.
        with open(os.path.join(data, "secret"), "wb") as f:
            f.write(b"short")
        text = start_with_new_key("1")
        aside = [n for n in os.listdir(data) if n.startswith("secret.damaged-")]
        ok("started over with a new server key" in text and len(aside) == 1 and
           open(os.path.join(data, aside[0]), "rb").read() == b"short" and
           os.path.getsize(os.path.join(data, "secret")) == 32,
           "a damaged key with JIAYIN_NEW_KEY=1: kept aside, a new key made", text[-300:])
        # Damaged again at once: the first one kept aside is not overwritten (the review:
        # secret.damaged-TIME was the same name within a second).
        with open(os.path.join(data, "secret"), "wb") as f:
            f.write(b"shorter")
        text = start_with_new_key("1")
        aside = sorted(open(os.path.join(data, n), "rb").read() for n in os.listdir(data)
                       if n.startswith("secret.damaged-"))
        ok("started over" in text and aside == [b"short", b"shorter"],
           "a second damaged key is kept aside beside the first", str(aside))
        srv = Server(binary, data=data)
        ok(request(srv, "GET", "/healthz").status == 200,
           "and the new key is the directory's from then on")
        srv.stop()
        d2 = os.path.join(srv.tmp, "old")
        os.makedirs(d2)
        old = Server(binary, data=d2)
        old.stop()
        os.unlink(os.path.join(d2, "secret"))
        con = sqlite3.connect(os.path.join(d2, "directory.db"))
        con.execute("DELETE FROM meta")
        con.commit()
        con.close()
        srv = Server(binary, data=d2)
        ok(os.path.getsize(os.path.join(d2, "secret")) == 32,
           "a data directory from before the key (none recorded) gets one at its start")
    finally:
        srv.stop()


def kiosk_child(srv, mom):
    """A school kiosk (its token) and a child of mom's family paired to it with the PIN
    1, 2, 3, 4 (its link)."""
    fam = mom["family"]["id"]
    ktok = add_kiosk(srv.data)
    kcode = request(srv, "POST", "/v1/kiosk/pairing-codes", b"",
                    headers=bearer(ktok)).json()["code"]
    kid = post_json(srv, f"/v1/families/{fam}/members", {"member_name": "小刚", "role": "child"},
                    headers=bearer(mom["token"])).json()["member"]
    link = post_json(srv, f"/v1/families/{fam}/kiosk-links",
                     {"code": kcode, "member_id": kid["id"], "pin": [1, 2, 3, 4]},
                     headers=bearer(mom["token"])).json()["link"]
    return ktok, link


def kiosk_signed_urls(binary):
    """A signed audio URL a child's kiosk session asks for is served no-store like the
    session's own audio (a shared tablet keeps none of the family's voices), cannot be made an
    ordinary one by dropping the session from it, and stops when the session ends."""
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        ktok, link = kiosk_child(srv, mom)

        def login():
            return post_json(srv, "/v1/kiosk/sessions", {"child": link["id"], "pin": [1, 2, 3, 4]},
                             headers=bearer(ktok)).json()["token"]
        session = login()
        mid = upload(srv, mom["token"], fam, wav).json()["message"]["id"]
        full = request(srv, "GET", f"/v1/families/{fam}/messages/{mid}/audio",
                       headers=bearer(mom["token"])).body

        def audio_url(token):
            r = request(srv, "POST", f"/v1/families/{fam}/messages/{mid}/audio-url", b"",
                        headers=bearer(token))
            return r.json()["url"] if r.status == 200 else "/"
        own = request(srv, "GET", f"/v1/families/{fam}/messages/{mid}/audio",
                      headers=bearer(session))
        url = audio_url(session)
        a = request(srv, "GET", url)
        h = request(srv, "HEAD", url)
        ok(own.header("Cache-Control") == "private, no-store" and a.status == 200 and
           a.body == full and a.header("Cache-Control") == "private, no-store" and
           h.status == 200 and h.header("Cache-Control") == "private, no-store",
           "a kiosk session's signed URL plays, served private, no-store like the session's "
           "own audio", f"{a.status} {a.header('Cache-Control')!r} {url}")
        parts = url.split("?", 1)[1].split("&") if "?" in url else []
        stripped = url.split("?")[0] + "?" + "&".join(p for p in parts
                                                       if not p.startswith("session="))
        b = request(srv, "GET", stripped)
        ok(len(parts) == 3 and b.status == 403 and
           b.json()["error"]["code"] == "invalid_signature",
           "the session taken out of it (to be cached): 403 invalid_signature",
           f"{parts} {b.status}")
        m = re.fullmatch(r"private, max-age=(\d+)", request(srv, "GET", audio_url(mom["token"]))
                         .header("Cache-Control") or "")
        ok(m is not None, "a parent's phone's URL is still kept while it lives")
        session2_url = url
        # the session ends (the child logs out): its URL stops with it
        e = request(srv, "DELETE", "/v1/kiosk/session", headers=bearer(session))
        g = request(srv, "GET", session2_url)
        ok(e.status == 204 and g.status == 403 and g.json()["error"]["code"] == "url_expired",
           "after the child logs out, the session's URL: 403 url_expired",
           f"{e.status} {g.status} {g.body[:120]!r}")
        # and another way a session ends: the next child (here the same) logs in
        s2 = login()
        u2 = audio_url(s2)
        first = request(srv, "GET", u2).status
        login()
        g = request(srv, "GET", u2)
        ok(first == 200 and g.status == 403 and g.json()["error"]["code"] == "url_expired",
           "a new login on the kiosk ends the previous session's URLs too: 403 url_expired",
           f"{first} {g.status} {g.body[:120]!r}")
    finally:
        srv.stop()


def kiosk_pins_after_a_new_key(binary):
    """Started over with a new key (JIAYIN_NEW_KEY=1), the children's kiosk PINs, hashed with
    the old one, are withdrawn: the child's link says pin_set false and a login with the right
    pictures is 409 pin_not_set, where it was 403 wrong_pin, counted, until the child was locked
    out (the operations review); the start says how many were withdrawn."""
    srv = Server(binary)
    data = srv.data
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        ktok, link = kiosk_child(srv, mom)
        before = post_json(srv, "/v1/kiosk/sessions", {"child": link["id"], "pin": [1, 2, 3, 4]},
                           headers=bearer(ktok))
    finally:
        srv.stop()
    with open(os.path.join(data, "secret"), "wb") as f:
        f.write(os.urandom(32))
    os.environ["JIAYIN_NEW_KEY"] = "1"
    try:
        srv = Server(binary, data=data)
    finally:
        del os.environ["JIAYIN_NEW_KEY"]
    try:
        said = srv.log_text()
        children = request(srv, "GET", "/v1/kiosk/children", headers=bearer(ktok)).json()
        shown = [c.get("pin_set") for c in children.get("children", [])]
        after = [post_json(srv, "/v1/kiosk/sessions", {"child": link["id"], "pin": [1, 2, 3, 4]},
                           headers=bearer(ktok)) for _ in range(6)]
        codes = [(a.status, a.json()["error"]["code"] if a.status >= 400 else "") for a in after]
        ok(before.status == 201 and "1 children's kiosk PINs were withdrawn" in said and
           shown == [False] and codes == [(409, "pin_not_set")] * 6,
           "a new key withdraws the kiosk PINs: pin_set false, the right pictures 409 "
           "pin_not_set (never wrong_pin, never a lock)", f"{before.status} {shown} {codes}")
        pin = request(srv, "PUT", f"/v1/families/{fam}/kiosk-links/{link['id']}/pin",
                      json.dumps({"pin": [4, 3, 2, 1]}).encode(),
                      headers=bearer(mom["token"]) + [("Content-Type", "application/json")])
        again = post_json(srv, "/v1/kiosk/sessions", {"child": link["id"], "pin": [4, 3, 2, 1]},
                          headers=bearer(ktok))
        ok(pin.status == 200 and again.status == 201,
           "a parent sets the PIN again and the child logs in", f"{pin.status} {again.status}")
    finally:
        srv.stop()


def fetched_at_once(binary):
    """A message's audio fetched in the second it was stored (the child's app, woken by it,
    plays it at once): its Last-Modified, the message's time, is not after the answer's Date
    (RFC 9110 8.8.2.1), through the API and a signed URL alike. The server refreshes its Date
    once a second, a second after its start: started at .8 of a second, its Date names the
    second before until about .85, and a short clip sent just after a second begins is stored
    and fetched in that window (it was dated a second after the Date that came with it)."""
    import tempfile
    import time
    from email.utils import parsedate_to_datetime
    from apiclient import sine_wav
    with tempfile.TemporaryDirectory() as tmp:
        clip = sine_wav(os.path.join(tmp, "a.wav"), 440, 1.0)
    time.sleep(1.8 - time.time() % 1)
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        late = []
        for _ in range(5):
            time.sleep(1.01 - time.time() % 1)
            mid = upload(srv, mom["token"], fam, clip).json()["message"]["id"]
            a = request(srv, "GET", f"/v1/families/{fam}/messages/{mid}/audio",
                        headers=bearer(mom["token"]))
            u = request(srv, "POST", f"/v1/families/{fam}/messages/{mid}/audio-url", b"",
                        headers=bearer(mom["token"])).json()["url"]
            for r in (a, request(srv, "GET", u, headers=[("Range", "bytes=0-")])):
                lm, date = r.header("Last-Modified"), r.header("Date")
                if not (r.status in (200, 206) and lm and date and
                        parsedate_to_datetime(lm) <= parsedate_to_datetime(date)):
                    late.append(f"{r.status} {lm} / {date}")
        ok(not late, "a message's audio fetched in the second it was stored: Last-Modified "
           "is not after Date", f"{len(late)} of 10: {late[:2]}")
    finally:
        srv.stop()


def main():
    binary = sys.argv[1]
    signed_urls(binary)
    kiosk_signed_urls(binary)
    kiosk_pins_after_a_new_key(binary)
    fetched_at_once(binary)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
