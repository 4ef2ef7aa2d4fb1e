import Foundation
import Testing
import UDPDControl
import UDPDTestSupport

/// The control socket's path is checked from `/` down as OpenSSH's `StrictModes` does, by udpd before it creates
/// the socket and by udpctl before it sends anything; and a daemon that dropped to `user:` removes its socket file
/// at exit, or says that it could not.
@Suite("The control socket's path is safe, and its file goes away with udpd", .serialized)
struct ControlSocketSafetyTests {
    /// An echo service on a free port, with `user: nobody` when `dropping`.
    func config(dropping: Bool) throws -> String {
        (dropping ? "user: nobody\n" : "") + echoYAML([("echo", "echo", try probeFreePort())])
    }

    @Test("user: nobody: the socket directory udpd creates is nobody's, and the socket file is gone after SIGTERM")
    func socketRemovedAfterDrop() throws {
        try #require(isRoot, "needs root to drop privileges")
        let layout = try TemporaryDirectory()
        chmod(layout.path, 0o755)
        let socket = layout.file("run/control.sock")
        let udpd = try UDPDProcess(config: try config(dropping: true), socketPath: socket)
        chmod(udpd.directory.path, 0o755)
        chmod(udpd.configPath, 0o644)
        try udpd.waitUntilReady()
        #expect(udpd.log.contains("dropped privileges"))
        var status = stat()
        #expect(stat(layout.file("run"), &status) == 0 && status.st_uid == 65534, "the directory is nobody's")
        let listed = try udpd.udpctl(["status"])
        #expect(listed.status == 0, "root's udpctl trusts the daemon's user: \(listed.standardError)")
        udpd.send(signal: SIGTERM)
        #expect(udpd.waitForExit() == 0, "\(udpd.log)")
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket file was left behind:\n\(udpd.log)")
        #expect(udpd.log.contains("control socket closed"))
        #expect(!udpd.log.contains("left behind"), "\(udpd.log)")
    }

    @Test("user: nobody in a directory root keeps: a warning at start, and the log says the file stayed behind")
    func socketLeftBehindIsReported() throws {
        try #require(isRoot, "needs root to drop privileges")
        let layout = try TemporaryDirectory()
        chmod(layout.path, 0o755)
        mkdir(layout.file("rootsdir"), 0o755)
        let socket = layout.file("rootsdir/control.sock")
        let udpd = try UDPDProcess(config: try config(dropping: true), socketPath: socket)
        chmod(udpd.directory.path, 0o755)
        chmod(udpd.configPath, 0o644)
        try udpd.waitUntilReady()
        #expect(udpd.log.contains("the socket file will stay behind at exit"), "\(udpd.log)")
        udpd.send(signal: SIGTERM)
        #expect(udpd.waitForExit() == 0, "\(udpd.log)")
        #expect(FileManager.default.fileExists(atPath: socket))
        #expect(udpd.log.contains("left behind: unlink"), "the log must not claim the file is gone:\n\(udpd.log)")
    }

    @Test("udpd refuses a socket below a world-writable, non-sticky directory and names it")
    func daemonRefusesUnsafeAncestor() throws {
        try #require(isRoot, "needs root to lay out directories for several users")
        let layout = try TemporaryDirectory()
        chmod(layout.path, 0o755)
        mkdir(layout.file("shared"), 0o777)
        chmod(layout.file("shared"), 0o777)
        // The socket's own directory looks right (root's, 0755), but anyone may rename it away and put theirs there.
        mkdir(layout.file("shared/udpd"), 0o755)
        let socket = layout.file("shared/udpd/c.sock")
        let udpd = try UDPDProcess(config: try config(dropping: false), socketPath: socket)
        #expect(udpd.waitForExit() == 1, "udpd must not start:\n\(udpd.log)")
        #expect(udpd.log.contains("\(layout.file("shared")): group and others may write to it"), "\(udpd.log)")
        #expect(!FileManager.default.fileExists(atPath: socket), "no socket below it")

        // Where the socket's directory is missing, nothing is created below the unsafe one either.
        let missing = try UDPDProcess(
            config: try config(dropping: false),
            socketPath: layout.file("shared/new/c.sock")
        )
        #expect(missing.waitForExit() == 1, "udpd must not start:\n\(missing.log)")
        #expect(!FileManager.default.fileExists(atPath: layout.file("shared/new")), "nothing created below it")
    }

    @Test("udpd refuses a socket below a directory another user owns, however far up")
    func daemonRefusesForeignOwner() throws {
        try #require(isRoot, "needs root to lay out directories for several users")
        let layout = try TemporaryDirectory()
        chmod(layout.path, 0o755)
        mkdir(layout.file("daemons"), 0o755)
        mkdir(layout.file("daemons/sub"), 0o755)
        // daemon:daemon owns the directory above root's "sub": they could rename it and put their own in its place.
        chown(layout.file("daemons"), 1, 1)
        let socket = layout.file("daemons/sub/c.sock")
        let udpd = try UDPDProcess(config: try config(dropping: false), socketPath: socket)
        #expect(udpd.waitForExit() == 1, "udpd must not start:\n\(udpd.log)")
        #expect(udpd.log.contains("\(layout.file("daemons")): it belongs to uid 1"), "\(udpd.log)")
    }

    @Test("udpctl refuses a socket whose directory became unsafe, names it, and sends nothing; sticky is fine")
    func clientRefusesUnsafePath() throws {
        try #require(isRoot, "needs root to lay out directories for several users")
        let layout = try TemporaryDirectory()
        chmod(layout.path, 0o755)
        let directory = layout.file("ctl")
        let udpd = try UDPDProcess(config: try config(dropping: false), socketPath: directory + "/c.sock")
        try udpd.waitUntilReady()

        // Someone made the directory writable by everybody: anyone could have swapped the socket.
        chmod(directory, 0o777)
        let open = try udpd.udpctl(["reload"])
        #expect(open.status == 2, "\(open.standardOutput)")
        #expect(open.standardError.contains("refusing to talk to the daemon"), "\(open.standardError)")
        #expect(open.standardError.contains("\(directory): group and others may write to it"), "\(open.standardError)")
        #expect(!udpd.log.contains("reload"), "nothing may reach the daemon:\n\(udpd.log)")

        // A directory of another user (not the daemon's): they could swap it too.
        chmod(directory, 0o755)
        chown(directory, 1, 1)
        let foreign = try udpd.udpctl(["status"])
        #expect(foreign.status == 2)
        #expect(foreign.standardError.contains("\(directory): it belongs to uid 1"), "\(foreign.standardError)")

        // Sticky and world-writable like /tmp: only an entry's owner may replace it, and the socket is root's.
        chown(directory, 0, 0)
        chmod(directory, 0o1777)
        let sticky = try udpd.udpctl(["status"])
        #expect(sticky.status == 0, "\(sticky.standardError)")
    }
}
