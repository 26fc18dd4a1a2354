"""The audit agent: takes listener fds over the OCI listenerPath protocol and answers notifications.

protocol.py reads what a runtime sends (state JSON plus the listener fd), notify.py
talks to the kernel (NOTIF_SIZES, RECV, SEND, ID_VALID), events.py turns notified
calls into a bounded JSON-lines log, loop.py serves many containers from one epoll
loop, summary.py reads a log back. The answers come from ocishim/audit.py.
"""
