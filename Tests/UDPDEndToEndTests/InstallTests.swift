import Foundation
import Testing
import UDPDTestSupport

/// `make`, if installed.
let makePath: String? = ["/usr/bin/make", "/usr/local/bin/make"]
    .first { FileManager.default.isExecutableFile(atPath: $0) }

@Suite("make install and make uninstall")
struct InstallTests {
    @Test(
        "install into a DESTDIR puts everything in place; uninstall leaves nothing behind",
        .enabled(if: makePath != nil, "make is needed")
    )
    func installThenUninstall() throws {
        let stage = try TemporaryDirectory()
        let root = BuiltProducts.packageRoot.path
        let common = ["-C", root, "DESTDIR=\(stage.path)", "PREFIX=/usr/local"]
        let install = try runCommand(
            makePath!,
            ["install", "BINDIR_SOURCE=\(BuiltProducts.directory.path)"] + common,
            timeout: 120
        )
        #expect(install.status == 0, "\(install.standardOutput)\(install.standardError)")

        for file in [
            "usr/local/sbin/udpd", "usr/local/bin/udpctl", "usr/local/lib/systemd/system/udpd.service",
            "usr/local/lib/systemd/system/udpd.socket", "usr/local/share/doc/udpd/examples/services.yaml",
            "usr/local/share/bash-completion/completions/udpctl", "usr/local/share/zsh/site-functions/_udpctl",
            "etc/udpd/services.yaml",
        ] {
            #expect(FileManager.default.fileExists(atPath: stage.file(file)), "missing \(file)")
        }
        let manPages = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/man")) ?? []
        for page in manPages where page.hasSuffix(".5") || page.hasSuffix(".8") {
            let installed = stage.file("usr/local/share/man/man\(page.suffix(1))/\(page)")
            #expect(FileManager.default.fileExists(atPath: installed), "missing man page \(page)")
        }
        let unit = try String(contentsOfFile: stage.file("usr/local/lib/systemd/system/udpd.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/sbin/udpd -c /etc/udpd/services.yaml\n"))
        let version = try runCommand(stage.file("usr/local/sbin/udpd"), ["--version"])
        #expect(version.status == 0 && !version.standardOutput.isEmpty)
        let check = try runCommand(
            stage.file("usr/local/sbin/udpd"),
            [
                "-c", stage.file("etc/udpd/services.yaml"),
                "--check",
            ]
        )
        #expect(check.status == 0, "the installed configuration is valid: \(check.standardError)")

        let uninstall = try runCommand(makePath!, ["uninstall"] + common, timeout: 60)
        #expect(uninstall.status == 0, "\(uninstall.standardOutput)\(uninstall.standardError)")
        let left = FileManager.default.subpaths(atPath: stage.path) ?? ["(cannot list)"]
        #expect(left.isEmpty, "uninstall left \(left)")
    }

    @Test(
        "uninstall keeps a configuration file the operator changed",
        .enabled(if: makePath != nil, "make is needed")
    )
    func uninstallKeepsAChangedConfiguration() throws {
        let stage = try TemporaryDirectory()
        let common = ["-C", BuiltProducts.packageRoot.path, "DESTDIR=\(stage.path)", "PREFIX=/usr"]
        let install = try runCommand(
            makePath!,
            ["install", "BINDIR_SOURCE=\(BuiltProducts.directory.path)"] + common,
            timeout: 120
        )
        #expect(install.status == 0, "\(install.standardOutput)\(install.standardError)")
        let config = stage.file("etc/udpd/services.yaml")
        let handle = try #require(FileHandle(forWritingAtPath: config))
        handle.seekToEndOfFile()
        handle.write(Data("# the operator's change\n".utf8))
        handle.closeFile()
        let uninstall = try runCommand(makePath!, ["uninstall"] + common, timeout: 60)
        #expect(uninstall.status == 0)
        #expect(uninstall.standardOutput.contains("keeping"))
        let left = FileManager.default.subpaths(atPath: stage.path)?.sorted()
        #expect(left == ["etc", "etc/udpd", "etc/udpd/services.yaml"])
    }
}
