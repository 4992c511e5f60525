import Foundation
import GRPCCore
import Synchronization
import SwiftProtobuf

/// A configuration file (providers, limits) that cannot be used; the description names the file
/// and, for a bad entry, the field (e.g. `limits[1].unit`).
package struct ConfigFileError: Error, CustomStringConvertible {
  package var description: String

  package init(_ description: String) {
    self.description = description
  }
}

/// Configuration files are the protobuf JSON of a message of the service's API, so a file entry is
/// checked by the same code as the API call.
package enum ConfigFile {
  /// Reads `path` as the protobuf JSON of `M`; `kind` names the file in errors ("the limits file").
  package static func load<M: SwiftProtobuf.Message>(_ type: M.Type, path: String, kind: String) throws(ConfigFileError) -> M {
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
      throw ConfigFileError("cannot read \(kind) \(path): \(error.localizedDescription)")
    }
    do {
      return try M(jsonUTF8Data: data)
    } catch {
      throw ConfigFileError("\(kind) \(path) is not valid: \(error)")
    }
  }

  /// Checks each entry with `check`, which throws the API's error naming the field; the first bad
  /// one becomes a `ConfigFileError` naming the file.
  package static func entries<Entry, Checked>(
    _ entries: [Entry], path: String, kind: String, _ check: (Int, Entry) throws(RPCError) -> Checked
  ) throws(ConfigFileError) -> [Checked] {
    var checked: [Checked] = []
    for (index, entry) in entries.enumerated() {
      do throws(RPCError) {
        checked.append(try check(index, entry))
      } catch {
        throw ConfigFileError("\(kind) \(path): \(error.message)")
      }
    }
    return checked
  }
}

/// One value per process, made from the first `ServiceResources` it is asked with: what a
/// definition's RPC services, background workers and `prepare` share (the host builds them
/// separately from the same resources).
package final class PerProcess<Value: Sendable>: Sendable {
  private let value = Mutex<Value?>(nil)
  private let make: @Sendable (ServiceResources) -> Value

  package init(_ make: @escaping @Sendable (ServiceResources) -> Value) {
    self.make = make
  }

  package func callAsFunction(_ resources: ServiceResources) -> Value {
    value.withLock { value in
      if let value { return value }
      let made = make(resources)
      value = made
      return made
    }
  }
}
