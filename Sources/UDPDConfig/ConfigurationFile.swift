#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading a configuration file from disk: the only I/O in UDPDConfig.
enum ConfigurationFile {
    /// Larger files are refused: a configuration is a few kilobytes, and this bounds memory on a wrong path.
    static let maximumSize = 16 << 20

    /// The file's text; throws an error naming the file when it cannot be read or is not UTF-8.
    static func readText(path: String) throws(ConfigurationError) -> String {
        func failure(_ message: String, at position: SourcePosition? = nil) -> ConfigurationError {
            ConfigurationError(file: path, position: position, message: message)
        }
        guard !path.utf8.contains(0) else { throw failure("the path contains a NUL character") }
        // O_NONBLOCK: opening a FIFO by mistake must not hang; it is refused below as not a regular file.
        let descriptor = retryingEINTR { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        guard descriptor >= 0 else { throw failure("cannot open the file: \(errorText(errno))") }
        defer { _ = close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw failure("cannot examine the file: \(errorText(errno))") }
        switch status.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw failure("is a directory, not a configuration file")
        default: throw failure("is not a regular file")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                retryingEINTR { read(descriptor, buffer.baseAddress, buffer.count) }
            }
            guard count >= 0 else { throw failure("cannot read the file: \(errorText(errno))") }
            if count == 0 { break }
            bytes += chunk.prefix(count)
            guard bytes.count <= maximumSize else { throw failure("the file is larger than 16 MiB") }
        }
        // The standard library validates in bulk; the position of a problem is worked out only when there is one.
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        throw failure("the file is not valid UTF-8", at: firstInvalidUTF8(bytes) ?? SourcePosition(line: 1, column: 1))
    }

    /// The line and column of the first byte that is not part of valid UTF-8, or `nil` when all of it is valid.
    static func firstInvalidUTF8(_ bytes: [UInt8]) -> SourcePosition? {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var line = 1
        var column = 1
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                if scalar == "\n" {
                    line += 1
                    column = 1
                } else {
                    column += 1
                }
            case .emptyInput:
                return nil
            case .error:
                return SourcePosition(line: line, column: column)
            }
        }
    }

    private static func retryingEINTR<Result: BinaryInteger>(_ call: () -> Result) -> Result {
        while true {
            let result = call()
            if result >= 0 || errno != EINTR { return result }
        }
    }

    private static func errorText(_ code: Int32) -> String {
        strerror(code).map { String(cString: $0) } ?? "error \(code)"
    }
}
