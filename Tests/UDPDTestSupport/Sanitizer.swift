import Foundation

/// The sanitizer the binaries under test were built with, as CI declares it (`UDPD_TEST_SANITIZER=address` for
/// the AddressSanitizer run); `nil` for a plain build.
public var testSanitizer: String? {
    ProcessInfo.processInfo.environment["UDPD_TEST_SANITIZER"].flatMap { $0.isEmpty ? nil : $0 }
}

/// How much more resident memory a process may use for the same work: AddressSanitizer keeps freed memory in
/// quarantine and maps shadow memory for what is touched, so memory bounds are 4 times as wide under it. The
/// bounds still catch growth per datagram or per connection, which is many times larger.
public var residentMemoryScale: Int { testSanitizer == nil ? 1 : 4 }
