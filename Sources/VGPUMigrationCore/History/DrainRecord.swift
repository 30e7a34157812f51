import struct Foundation.Date

/// A drain as the history keeps it: the host, its plan, and each VM's move with the migrations
/// made for it (a retry adds one). `history --drains` lists drains; `show ID` shows one.
package struct DrainRecord: Sendable, Hashable, Codable {
    /// Where the drain is.
    package enum State: String, Sendable, Hashable, Codable {
        /// Moves are planned or running; a drain whose coordinator stopped stays here until
        /// `drain --resume`.
        case running
        /// Every VM left the host.
        case completed
        /// It ended with VMs still on the host (named in the moves).
        case incomplete
    }

    /// Where one VM's move is.
    package enum MoveState: String, Sendable, Hashable, Codable {
        case pending
        case migrating
        case moved
        /// Its migration (and the retry, if there was one) failed; the VM stays on the host.
        case failed
        /// No destination could take it.
        case unplaced
    }

    /// One VM's move.
    package struct Move: Sendable, Hashable, Codable {
        package var vm: String
        /// Where it goes (or went); nil when no destination could take it.
        package var destination: String?
        package var state: MoveState
        /// Its migrations' ids, oldest first.
        package var migrations: [String]
        /// Why it failed or could not be placed.
        package var reason: String?

        package init(
            vm: String, destination: String?, state: MoveState, migrations: [String] = [], reason: String? = nil
        ) {
            self.vm = vm
            self.destination = destination
            self.state = state
            self.migrations = migrations
            self.reason = reason
        }
    }

    package var id: String
    package var host: String
    package var policy: String
    package var parallel: Int
    package var createdAt: Date
    package var updatedAt: Date
    package var state: State
    /// The plan the drain started with (a resumed drain plans its remaining VMs again; their
    /// moves say where they went).
    package var plan: DrainPlan
    package var moves: [Move]

    package init(id: String, host: String, policy: String, parallel: Int, at time: Date, plan: DrainPlan) {
        self.id = id
        self.host = host
        self.policy = policy
        self.parallel = parallel
        createdAt = time
        updatedAt = time
        state = .running
        self.plan = plan
        moves =
            plan.placements.map { Move(vm: $0.vm, destination: $0.destination, state: .pending) }
            + plan.unplaced.map { Move(vm: $0.vm, destination: nil, state: .unplaced, reason: $0.reasons.first) }
    }

    enum CodingKeys: String, CodingKey {
        case id, host, policy, parallel
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case state, plan, moves
    }

    /// The move of VM `vm`.
    package func move(of vm: String) -> Move? { moves.first { $0.vm == vm } }

    /// Sets the move of `vm` (adding it when the drain had none).
    package mutating func update(_ move: Move, at time: Date) {
        if let index = moves.firstIndex(where: { $0.vm == move.vm }) {
            moves[index] = move
        } else {
            moves.append(move)
        }
        updatedAt = time
    }

    /// Changes the move of `vm`, starting from a pending one when the drain had none.
    package mutating func changeMove(of vm: String, at time: Date, _ change: (inout Move) -> Void) {
        var move = self.move(of: vm) ?? Move(vm: vm, destination: nil, state: .pending)
        change(&move)
        update(move, at: time)
    }

    /// Ends the drain: completed when every move moved, else incomplete.
    package mutating func end(at time: Date) {
        state = moves.allSatisfy { $0.state == .moved } ? .completed : .incomplete
        updatedAt = time
    }
}
