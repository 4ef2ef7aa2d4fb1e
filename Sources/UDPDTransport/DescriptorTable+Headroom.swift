#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension DescriptorTable {
    /// How many descriptors at the top of udpd's open-file limit no request may take: a forward session's socket,
    /// an exec program's pipes, an accepted TCP connection. They stay for the daemon itself, so that out of
    /// descriptors the control socket still answers `udpctl status` and `reload`, and `/metrics` is still scraped.
    ///
    /// Linux gives out the lowest free number, so a request's descriptor that lands in the top `headroom` numbers
    /// means the table is that full: the request is refused (counted as `no_descriptor`) and the descriptor closed
    /// at once. The check costs a comparison per descriptor a request opens, and nothing per datagram.
    public static let headroom = 32

    /// The lowest descriptor number a request may not keep: the open-file soft limit, read once (udpd raises it
    /// to the hard limit first thing at start, see ``raiseOpenFileLimit()``), less ``headroom``.
    private static let requestCeiling: CInt = {
        var limit = rlimit()
        #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        // RLIM_INFINITY clamps to CInt.max: no descriptor number reaches it.
        guard (try? systemCall("getrlimit", context: "RLIMIT_NOFILE") { getrlimit(resource, &limit) }) != nil else {
            return CInt.max
        }
        return CInt(clamping: max(Int(clamping: limit.rlim_cur) - headroom, 0))
    }()

    /// Reads the limit now, so that the first request does not pay for it; call it while setting up a service.
    public static func prepareHeadroom() {
        _ = requestCeiling
    }

    /// Throws the error a full table would (EMFILE, naming `call` and `context`) when `descriptor`, just opened for
    /// a request, is one of the descriptors kept for the daemon. Closes nothing: the caller owns `descriptor`.
    public static func checkHeadroom(
        _ descriptor: CInt,
        call: StaticString,
        context: @autoclosure () -> String
    ) throws(SystemCallError) {
        guard descriptor >= requestCeiling else { return }
        throw SystemCallError(
            call: call.description,
            errno: EMFILE,
            context: "\(context()) (the last \(headroom) descriptors are kept for udpd itself)"
        )
    }

    /// Whether the next descriptor opened would be one of those kept for the daemon, or none can be opened: for
    /// descriptors opened where udpd cannot see their number (a connection SwiftNIO accepted). Two system calls.
    public static var isNearlyFull: Bool {
        let probe: CInt
        do {
            probe = try systemCall("open", context: "/dev/null") { open("/dev/null", O_RDONLY | O_CLOEXEC) }
        } catch {
            return error.isDescriptorShortage
        }
        // close is never retried on EINTR (the descriptor is gone either way), so it bypasses systemCall.
        _ = close(probe)
        return probe >= requestCeiling
    }
}

extension SystemCallError {
    /// Whether the call failed for want of a descriptor: the process's limit (EMFILE, or the headroom udpd keeps
    /// for itself) or the system's (ENFILE).
    public var isDescriptorShortage: Bool { errno == EMFILE || errno == ENFILE }
}
