/* notify.h - systemd service notifications (sd_notify), no-ops elsewhere.
 *
 * Under a Type=notify unit systemd sets NOTIFY_SOCKET; these tell it when the bridge
 * is ready, reloading, stopping, and (with WatchdogSec=) that it is still healthy.
 * Without NOTIFY_SOCKET (a terminal, a container, tests) every call does nothing, and
 * a build without libsystemd (SLUICE_HAVE_SYSTEMD undefined) compiles them to no-ops.
 * Main thread only (sd_notify itself is thread-safe; the reload timestamp is not). */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

#include <stdint.h>

void notify_ready(void);        /* READY=1 (also after a reload) */
void notify_reloading(void);    /* RELOADING=1 + MONOTONIC_USEC (systemd >= 253) */
void notify_stopping(void);     /* STOPPING=1 */
void notify_watchdog(void);     /* WATCHDOG=1 */
/* The watchdog interval systemd expects pings within (WatchdogSec=) in ms, or 0 when
 * no watchdog is armed for this process. */
int64_t notify_watchdog_ms(void);

#endif
