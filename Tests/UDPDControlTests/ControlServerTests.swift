import Foundation
import Synchronization
import Testing
import UDPDControl

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("ControlServer answering ControlClient")
struct ControlServerTests {
    @Test("status round-trips, and last_reload is sent as null")
    func statusRoundTrip() async throws {
        try await withControlServer { path in
            let response = try await send(ControlRequest(command: .status), to: path)
            #expect(response.ok)
            #expect(response.status == sampleReport)

            let raw = try RawConnection(path: path)
            let line = try await onThread {
                try raw.write("{\"version\":1,\"command\":\"status\"}\n")
                return try raw.readLine()
            }
            let text = try #require(line)
            #expect(text.contains("\"last_reload\":null"))
            #expect(text.contains("\"reply_source\":\"kernel\""))
            #expect(!text.contains("\n"))
        }
    }

    @Test("a client that shuts down its sending side after the request still gets the answer")
    func halfClosedClient() async throws {
        try await withControlServer { path in
            let raw = try RawConnection(path: path)
            let (line, closed) = try await onThread {
                try raw.write("{\"version\":1,\"command\":\"metrics\"}\n")
                try raw.shutdownWrite()
                return (try raw.readLine(), raw.readsEndOfStream(timeout: 5))
            }
            let response = try ControlProtocol.decodeResponse(Array(try #require(line).utf8))
            #expect(response.metrics == "udpd_generation 3\n")
            #expect(closed)
        }
    }

    @Test("metrics and reload carry their payloads")
    func metricsAndReload() async throws {
        try await withControlServer { path in
            let metrics = try await send(ControlRequest(command: .metrics), to: path)
            #expect(metrics.metrics == "udpd_generation 3\n")
            let reload = try await send(ControlRequest(command: .reload), to: path)
            #expect(reload.reload == ReloadReport(ok: true, generation: 4))
        }
    }

    @Test("the handler learns the peer's uid and pid")
    func peerCredentials() async throws {
        let seen = Mutex<ControlPeer?>(nil)
        try await withControlServer(handler: { request, peer in
            seen.withLock { $0 = peer }
            return await sampleHandler(request, peer)
        }) { path in
            _ = try await send(ControlRequest(command: .status), to: path)
        }
        let peer = try #require(seen.withLock { $0 })
        #expect(peer.uid == geteuid())
        #expect(peer.pid == getpid())
    }

    @Test("invalid JSON gets an error and the same connection keeps serving")
    func malformedJSON() async throws {
        try await withControlServer { path in
            let raw = try RawConnection(path: path)
            let (bad, good) = try await onThread {
                try raw.write("this is not json\n")
                let bad = try raw.readLine()
                try raw.write("{\"version\":1,\"command\":\"metrics\"}\r\n")
                return (bad, try raw.readLine())
            }
            let badResponse = try ControlProtocol.decodeResponse(Array(try #require(bad).utf8))
            #expect(!badResponse.ok)
            #expect(badResponse.error?.hasPrefix("invalid JSON") == true)
            let goodResponse = try ControlProtocol.decodeResponse(Array(try #require(good).utf8))
            #expect(goodResponse.ok)
            #expect(goodResponse.metrics == "udpd_generation 3\n")
        }
    }

    @Test("an unknown command is refused by name")
    func unknownCommand() async throws {
        try await withControlServer { path in
            let raw = try RawConnection(path: path)
            let line = try await onThread {
                try raw.write("{\"version\":1,\"command\":\"explode\"}\n")
                return try raw.readLine()
            }
            let response = try ControlProtocol.decodeResponse(Array(try #require(line).utf8))
            #expect(!response.ok)
            #expect(response.error?.hasPrefix("unknown command") == true)
            #expect(response.error?.contains("explode") == true)
        }
    }

    @Test("another protocol version is refused")
    func wrongVersion() async throws {
        try await withControlServer { path in
            let response = try await send(ControlRequest(version: 2, command: .status), to: path)
            #expect(!response.ok)
            #expect(response.error?.hasPrefix("unsupported protocol version") == true)
            #expect(response.status == nil)
        }
    }

    @Test("a 70 KiB line gets an error, then the connection closes; others are still served")
    func oversizedRequest() async throws {
        try await withControlServer { path in
            let raw = try RawConnection(path: path)
            let (line, closed) = try await onThread {
                try raw.write(String(repeating: "a", count: 70 * 1024) + "\n")
                let line = try raw.readLine()
                return (line, raw.readsEndOfStream(timeout: 5))
            }
            let response = try ControlProtocol.decodeResponse(Array(try #require(line).utf8))
            #expect(!response.ok)
            #expect(response.error?.hasPrefix("request too large") == true)
            #expect(closed)
            let next = try await send(ControlRequest(command: .status), to: path)
            #expect(next.ok)
        }
    }

    @Test("a line of exactly 64 KiB is still read as a request")
    func requestAtTheLimit() async throws {
        try await withControlServer { path in
            let request = "{\"version\":1,\"command\":\"metrics\"}"
            let padded = request + String(repeating: " ", count: ControlProtocol.maximumRequestSize - request.count)
            let raw = try RawConnection(path: path)
            let line = try await onThread {
                try raw.write(padded + "\n")
                return try raw.readLine()
            }
            let response = try ControlProtocol.decodeResponse(Array(try #require(line).utf8))
            #expect(response.ok)
        }
    }

    @Test("twenty clients at once are all answered")
    func concurrentClients() async throws {
        try await withControlServer { path in
            try await withThrowingTaskGroup(of: ControlResponse.self) { group in
                for index in 0..<20 {
                    let command: ControlCommand = index.isMultiple(of: 2) ? .status : .metrics
                    group.addTask { try await send(ControlRequest(command: command), to: path) }
                }
                var answered = 0
                for try await response in group {
                    #expect(response.ok)
                    answered += 1
                }
                #expect(answered == 20)
            }
        }
    }

    @Test("a silent client neither blocks others nor stays open past the request timeout")
    func silentClient() async throws {
        try await withControlServer { path in
            let silent = try RawConnection(path: path)
            let started = ContinuousClock.now
            // Both times are taken on the thread that waits, so that what they measure is the server, not how
            // soon this task gets a cooperative thread back while other suites run beside it.
            let (response, answeredAfter) = try await onThread {
                let response = try ControlClient.send(ControlRequest(command: .status), to: path, timeout: .seconds(5))
                return (response, ContinuousClock.now - started)
            }
            #expect(response.ok)
            // Had the silent client blocked the server, the answer would have waited for its request timeout (5 s)
            // and found it closed. The causal check does not depend on how loaded the machine is; the time, only
            // loosely (an answer took 2.9 s once while every other suite ran beside this one on two cores).
            #expect(!silent.readsEndOfStream(timeout: 0), "the silent connection was closed before the answer came")
            #expect(answeredAfter < .seconds(4))
            let (closed, closedAfter) = try await onThread {
                (silent.readsEndOfStream(timeout: 10), ContinuousClock.now - started)
            }
            #expect(closed)
            #expect(closedAfter < .seconds(9))
        }
    }

    @Test("a slow handler is not cut off by the request timeout")
    func slowHandler() async throws {
        try await withControlServer(handler: { request, peer in
            try? await Task.sleep(for: .seconds(6))
            return await sampleHandler(request, peer)
        }) { path in
            let response = try await send(ControlRequest(command: .reload), to: path, timeout: .seconds(15))
            #expect(response.ok)
        }
    }

    @Test("a client is told which path has no daemon")
    func unreachable() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("missing.sock")
        #expect {
            try ControlClient.send(ControlRequest(command: .status), to: path, timeout: .seconds(1))
        } throws: { error in
            guard let error = error as? ControlClientError else { return false }
            return error.code == .unreachable && error.isUnreachable
                && error.description == "no daemon is listening on \(path): No such file or directory"
        }
    }

    @Test("a daemon that accepts but never answers times out")
    func timeout() async throws {
        try await withControlServer(handler: { request, peer in
            try? await Task.sleep(for: .seconds(3))
            return await sampleHandler(request, peer)
        }) { path in
            await #expect {
                try await send(ControlRequest(command: .status), to: path, timeout: .milliseconds(300))
            } throws: { error in
                (error as? ControlClientError)?.code == .timedOut
            }
        }
    }
}
