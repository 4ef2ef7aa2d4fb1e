import ArgumentParser
import UDPDControl

/// `udpctl`: asks a running udpd for its status, a reload or its metrics over the control socket.
@main
struct UDPCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpctl",
        abstract: "Control a running udpd: show its status, reload its configuration, print its metrics, upgrade it.",
        discussion: """
            udpctl talks to udpd over its control socket. Without -s or -c it uses the default path: \
            /run/udpd/control.sock for root, else $XDG_RUNTIME_DIR/udpd/control.sock, or \
            /tmp/udpd-UID/control.sock when XDG_RUNTIME_DIR is unset. -c FILE reads control.socket from that \
            udpd configuration file instead; -s and -c may stand before or after the subcommand.

            Exit status: 0 success; 1 the daemon refused (a rejected reload, an error answer); 2 no daemon could be \
            reached (nothing listening, no permission, no answer in time, or -c FILE is not a valid configuration).
            """,
        version: UDPDVersion.string,
        subcommands: [Status.self, Reload.self, Metrics.self, Upgrade.self]
    )

    @OptionGroup var connection: ConnectionOptions
}
