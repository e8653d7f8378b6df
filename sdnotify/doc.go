// Package sdnotify tells the service manager how a daemon is doing: ready,
// reloading, stopping, alive. It speaks systemd's sd_notify protocol by
// hand (one datagram to $NOTIFY_SOCKET per state) rather than link a
// library for thirty lines, and is a no-op where no manager listens.
package sdnotify
