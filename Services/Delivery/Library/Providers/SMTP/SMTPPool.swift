/// Open SMTP sessions of one provider; callers wait when all `maxConnections` are busy.
actor SMTPPool {
  let settings: SMTPSettings
  private var idle: [SMTPConnection] = []
  private var open = 0
  private var waiters: [CheckedContinuation<Void, Never>] = []
  private var closed = false

  init(settings: SMTPSettings) {
    self.settings = settings
  }

  /// A connection and whether it was used before.
  func acquire() async throws(SendFailure) -> (SMTPConnection, Bool) {
    while true {
      if closed { throw .temporary("the SMTP provider is shutting down") }
      while let connection = idle.popLast() {
        if connection.isOpen { return (connection, true) }
        open -= 1
      }
      if open < settings.maxConnections {
        open += 1
        do {
          return (try await SMTPConnection.open(settings), false)
        } catch {
          open -= 1
          wakeOne()
          throw error
        }
      }
      await withCheckedContinuation { waiters.append($0) }
    }
  }

  func release(_ connection: SMTPConnection) {
    if connection.isOpen && !closed {
      idle.append(connection)
    } else {
      open -= 1
    }
    wakeOne()
  }

  func closeAll() async {
    closed = true
    let connections = idle
    idle.removeAll()
    open -= connections.count
    for connection in connections { await connection.close() }
    for waiter in waiters { waiter.resume() }
    waiters.removeAll()
  }

  private func wakeOne() {
    if !waiters.isEmpty { waiters.removeFirst().resume() }
  }
}
