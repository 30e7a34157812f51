import Dispatch

/// Runs an actor's jobs on a serial dispatch queue of its own instead of Swift's cooperative
/// thread pool, for actors whose work blocks: sysfs writes that wait on the kernel (creating or
/// removing an mdev), and journal writes flushed with fsync. While such a call waits, the pool's
/// threads (a few, one per core) go on serving everything else.
package final class BlockingIOExecutor: SerialExecutor {
    private let queue: DispatchQueue
    private let key = DispatchSpecificKey<Bool>()

    package init(label: String) {
        queue = DispatchQueue(label: label)
        queue.setSpecific(key: key, value: true)
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    package func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Whether the caller runs on this executor's queue.
    package var isCurrent: Bool { DispatchQueue.getSpecific(key: key) == true }
}
