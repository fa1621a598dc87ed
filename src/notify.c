/* notify.c - see notify.h. A thin wrapper so main.c needs no #ifdefs. */
#include "sluice/notify.h"

#ifdef SLUICE_HAVE_SYSTEMD
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "sluice/log.h"

/* unset_environment = 0: the variables stay for later calls (reload, watchdog). */
static void
notify_send(const char *state)
{
    int rc = sd_notify(0, state);

    if (rc < 0)
        log_debug("main", "sd_notify(%s) failed: %d", state, rc);
}

void
notify_ready(void)
{
    notify_send("READY=1\nSTATUS=running");
}

void
notify_reloading(void)
{
    /* systemd 253+ (Type=notify-reload) matches RELOADING=1 with MONOTONIC_USEC, the
     * CLOCK_MONOTONIC time the reload started; older versions ignore the extra field. */
    struct timespec ts;
    char msg[96];

    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%" PRIu64,
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    notify_send(msg);
}

void
notify_stopping(void)
{
    notify_send("STOPPING=1\nSTATUS=stopping");
}

void
notify_watchdog(void)
{
    notify_send("WATCHDOG=1");
}

int64_t
notify_watchdog_ms(void)
{
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    return (int64_t)(usec / 1000u);
}

#else   /* no libsystemd: nothing to tell anyone */

void notify_ready(void) {}
void notify_reloading(void) {}
void notify_stopping(void) {}
void notify_watchdog(void) {}
int64_t notify_watchdog_ms(void) { return 0; }

#endif
