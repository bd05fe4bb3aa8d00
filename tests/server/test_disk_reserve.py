#!/usr/bin/env python3
"""test_disk_reserve.py — what all families' unfinished uploads leave of the server's disk (TAP).

usage: test_disk_reserve.py JIAYIN_BINARY

All families' unfinished uploads together leave --upload-disk-reserve of the data's disk free
for the mailboxes: past it, a creation or a plain upload is 507 storage_full with Retry-After
before its body, a chunked one in the middle of it, and counted in /metrics; a body's bytes
count once, as still to come or, written, in the disk's free space. The room is set from the
disk's free space at the start (its free space less 100 or 200 MB), and every check stays 20 MB
or more from its line either way, more than other tests' files come and go by meanwhile.
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # the helpers are imported: no __pycache__ in the tree
from serverlib import Server, request  # noqa: E402
from tap import finish, ok  # noqa: E402
from apiclient import metric  # noqa: E402
from test_api import bearer, signup  # noqa: E402
from test_family_share import MB, TUS, PlainUpload, code_of, create  # noqa: E402


def reserve_server(binary, room):
    """A server whose data directory's disk leaves `room` bytes for unfinished uploads (its
    free space now, less `room`, is the reserve), and the directory to remove after."""
    tmp = tempfile.mkdtemp(prefix="jiayin-reserve-")
    st = os.statvfs(tmp)
    srv = Server(binary, "--upload-disk-reserve", str(st.f_bavail * st.f_frsize - room),
                 data=os.path.join(tmp, "data"))
    return srv, tmp


def disk_reserve(binary):
    """No bound but each family's: a thousand families' unfinished uploads could fill the
    disk, and every family's next message would be refused."""
    # What unfinished uploads may hold: 100 MB. Each check below stays 20 MB or more from it
    # either way, more than other tests' files come and go by meanwhile.
    srv, tmp = reserve_server(binary, 100 * MB)
    try:
        mom = signup(srv, "孙家", "妈妈")
        grandpa = signup(srv, "吴家", "爷爷")
        huge = create(srv, mom, 190 * MB)
        small = create(srv, mom, 10 * MB)
        his = create(srv, grandpa, 50 * MB)
        hers = create(srv, mom, 60 * MB)
        ok(huge.status == 507 and code_of(huge) == "storage_full" and
           huge.header("Retry-After") == "300" and small.status == 201 and his.status == 201
           and hers.status == 507 and code_of(hers) == "storage_full",
           "100 MB of the disk for unfinished uploads: a 190 MB creation is 507 storage_full "
           "with Retry-After: 300, 10 MB and another family's 50 MB are 201, and then 60 MB "
           "more is 507, though the family's own room has it",
           f"{huge.status} {code_of(huge)} {huge.header('Retry-After')} {small.status} "
           f"{his.status} {hers.status}")
        request(srv, "DELETE", his.header("Location"), headers=TUS + bearer(grandpa["token"]))
        again = create(srv, mom, 60 * MB)
        plain = PlainUpload(srv, grandpa, 150 * MB).refused
        ok(again.status == 201 and plain and plain.status == 507 and
           code_of(plain) == "storage_full",
           "his upload gone, her 60 MB is 201; a plain upload of 150 MB is 507 before its "
           "body (no 100 Continue)", f"{again.status} {plain and (plain.status, code_of(plain))}")
        request(srv, "DELETE", again.header("Location"), headers=TUS + bearer(mom["token"]))
        most = create(srv, mom, 50 * MB)  # about 40 MB left
        chunked = PlainUpload(srv, grandpa)
        # 20 MB/s: the hold is looked at four times a second (a body faster than that may
        # pass its hold by what arrives in between: it is here, and it is taken)
        r, sent = chunked.until_answered(bytes(150 * MB), piece=1 << 20, pause=0.05)
        counted = metric(srv, "jiayin_uploads_refused_disk_total")
        ok(most.status == 201 and r and r.status == 507 and code_of(r) == "storage_full" and
           sent < 150 * MB and counted == 4,
           "a chunked plain upload that outgrows the disk's room is answered 507 storage_full "
           "in the middle of its body; /metrics counts the 4 refusals",
           f"{most.status} {r and (r.status, code_of(r))} sent {sent} counted {counted}")
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def disk_reserve_counts_arrived(binary):
    """A body's bytes counted twice against the disk's reserve while it arrived: as still to
    come (its whole length) and, once written, in the disk's free space. With 100 MB of a 200
    MB room in, every other family's upload of 60 MB was 507 storage_full."""
    srv, tmp = reserve_server(binary, 200 * MB)
    try:
        mom = signup(srv, "郑家", "妈妈")
        grandpa = signup(srv, "冯家", "爷爷")
        plain = PlainUpload(srv, mom, 100 * MB)
        for _ in range(95):
            plain.send(bytes(MB))
        time.sleep(1.5)  # written, and the disk looked at again
        beside = create(srv, grandpa, 60 * MB)
        plain.s.close()
        ok(plain.refused is None and beside.status == 201,
           "95 MB of a plain upload of 100 MB in, 200 MB of room: another family's 60 MB is "
           "201 (5 MB are still to come)", f"{beside.status} {code_of(beside)}")
        if beside.status == 201:
            request(srv, "DELETE", beside.header("Location"), headers=TUS + bearer(grandpa["token"]))
        up = create(srv, mom, 100 * MB)
        s = srv.connect(30)
        s.sendall((f"PATCH {up.header('Location')} HTTP/1.1\r\nHost: t\r\n"
                   f"Authorization: Bearer {mom['token']}\r\nTus-Resumable: 1.0.0\r\n"
                   "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                   f"Content-Length: {100 * MB}\r\n\r\n").encode())
        for _ in range(95):
            s.sendall(bytes(MB))
        time.sleep(1.5)
        beside = create(srv, grandpa, 60 * MB)
        s.close()
        ok(up.status == 201 and beside.status == 201,
           "and while a resumable upload's PATCH has sent 95 MB of its 100 MB, too",
           f"{up.status} {beside.status} {code_of(beside)}")
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    disk_reserve(sys.argv[1])
    disk_reserve_counts_arrived(sys.argv[1])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
