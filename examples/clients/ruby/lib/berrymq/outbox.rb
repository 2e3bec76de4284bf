# frozen_string_literal: true

module BerryMQ
  # Forwards an interconnection's messages from a background thread: what gathers while
  # one send_messages request is on its way goes out as the next one, so twitter never
  # waits for the network (and a receiver that twitters while the node is calling it
  # cannot deadlock). Bounded: a sender finding LIMIT messages waiting waits up to
  # BLOCK_TIMEOUT seconds for room, then gets TransportError; nothing is dropped silently.
  #
  # A node that refuses some messages of a batch (Queue is full, -32005, with data.refused
  # listing their indexes; or an error refusing the whole request) delivered the others:
  # only the refused ones are lost (counted in #losses, reported to +on_loss+, logged at
  # most once a second, and raised by the next #flush as QueueFull), and the messages
  # behind keep flowing. A failure of the connection (or the session: Unknown or expired
  # token) stops the outbox: what it held is lost, counted and reported the same way.
  class Outbox
    LIMIT = 10_000
    BLOCK_TIMEOUT = 10.0
    # Room left in a request for what surrounds the messages (method, token, secret, id).
    ENVELOPE = 512
    # The reasons of losses, as the Python client counts them (connection.losses).
    REFUSED = "refused: queue full"
    NOT_SENT = "not sent: connection failed or closed"
    # Seconds between two log lines about refused messages (one per burst).
    LOG_INTERVAL = 1.0

    attr_reader :sent, :lost, :failure

    # +sink+ sends one array of wire messages and returns once the node acknowledged it.
    # One batch holds at most +max_bytes+ of message JSON. +on_failure+ is called once,
    # from the outbox's thread, with the exception that stopped it; +on_loss+ with the
    # reason and the count of every loss.
    def initialize(name, limit: LIMIT, block_timeout: BLOCK_TIMEOUT,
                   max_bytes: JSONRPC::MAX_SIZE - ENVELOPE, on_failure: nil, on_loss: nil, &sink)
      @name = name
      @on_failure = on_failure
      @on_loss = on_loss
      @losses = Hash.new(0)
      @refused = Hash.new(0) # refusals since the last flush: reason -> count
      @logged_at = nil
      @unlogged = 0
      @limit = limit
      @block_timeout = block_timeout
      @max_bytes = max_bytes
      @sink = sink
      @items = []
      @lock = Mutex.new
      @more = ConditionVariable.new
      @room = ConditionVariable.new
      @queued = 0
      @sent = 0
      @lost = 0
      @failure = nil
      @stopped = false
      @thread = Thread.new { run }
    end

    # Queues one message (its wire form) for the node. Raises ArgumentError when JSON cannot
    # hold it or it nests deeper than a node takes (JSONRPC::MAX_MESSAGE_NESTING), MessageTooLarge over the size limit, TransportError when the queue stayed
    # full for block_timeout seconds, ConnectionClosed when sending failed before.
    def put(wire)
      size = JSONRPC.dump(wire, "message #{wire[0]}", limit: JSONRPC::MAX_MESSAGE_NESTING).bytesize
      if size > @max_bytes
        raise MessageTooLarge, "#{@name}: a message of #{size} bytes of JSON is over the size limit " \
                               "of #{@max_bytes} bytes; it was not sent"
      end
      @lock.synchronize do
        check_open
        deadline = BerryMQ.monotonic + @block_timeout
        unless BerryMQ.wait_for(@room, @lock, deadline) { @queued < @limit || @failure || @stopped }
          raise TransportError, "#{@name}: #{@limit} messages wait to be sent and the node took " \
                                "none in #{@block_timeout} s; this message was not sent"
        end
        check_open
        @items << [wire, size]
        @queued += 1
        @more.signal
      end
    end

    # Waits until everything put so far was acknowledged by the node; false on timeout.
    # Raises ConnectionClosed when sending failed, and (when +report+) QueueFull saying how
    # many messages the node refused since the last flush.
    def flush(timeout = nil, report: true)
      marker = Waiter.new
      @lock.synchronize do
        raise ConnectionClosed, "#{@name}: #{@failure}" if @failure
        return report ? report_refused : true if @stopped

        @items << marker
        @more.signal
      end
      done = marker.wait(timeout, false)
      raise ConnectionClosed, "#{@name}: #{@failure}" if @failure

      report ? @lock.synchronize { report_refused } && done : done
    end

    # How many messages were lost, by reason (REFUSED, NOT_SENT, "refused: ...").
    def losses
      @lock.synchronize { @losses.dup }
    end

    # Stops at once because the connection failed (+error+): what waits is lost, counted
    # as NOT_SENT; later puts and flushes raise ConnectionClosed.
    def abort(error)
      dropped = @lock.synchronize do
        @failure ||= error.message
        @stopped = true
        waiting = @items.reject { |item| item.is_a?(Waiter) }.size
        @items.each { |item| item.set(false) if item.is_a?(Waiter) }
        @items.clear
        @queued = 0
        @more.signal
        @room.broadcast
        waiting
      end
      lose(dropped, NOT_SENT, "could not forward #{dropped} message(s): #{error.message}") if dropped.positive?
    end

    # Sends what is queued (waiting at most +timeout+ seconds), then stops.
    def close(timeout = 5)
      @lock.synchronize do
        @stopped = true
        @more.signal
      end
      @thread.join(timeout) unless Thread.current == @thread
    end

    private

    def check_open
      raise ConnectionClosed, "#{@name}: the connection is closed (#{@failure})" if @failure
      raise ConnectionClosed, "#{@name}: the connection is closed" if @stopped
    end

    def run
      loop do
        batch, markers = take
        return if batch.nil?

        send_batch(batch) unless batch.empty?
        markers.each(&:set)
      end
    end

    # The next messages (up to max_bytes of them, stopping at a flush marker) and the
    # markers before them; nil once stopped and empty.
    def take
      @lock.synchronize do
        @more.wait(@lock) while @items.empty? && !@stopped
        return nil if @items.empty?

        batch = []
        markers = []
        bytes = 0
        while (item = @items.first)
          if item.is_a?(Waiter)
            break unless batch.empty?

            markers << @items.shift
          else
            break if !batch.empty? && bytes + item[1] + 1 > @max_bytes

            batch << @items.shift[0]
            bytes += item[1] + 1
            @queued -= 1
          end
        end
        @room.broadcast
        [batch, markers]
      end
    end

    def send_batch(batch)
      if @failure
        lose(batch.size, NOT_SENT, "could not forward #{batch.size} message(s): #{@failure}", throttle: true)
        return
      end
      @sink.call(batch)
      @sent += batch.size
    rescue RemoteError, MessageTooLarge => e
      return failed(e, batch) if e.is_a?(RemoteError) && e.code == JSONRPC::CODES[:unknown_token]

      refused(e, batch)
    rescue StandardError => e
      failed(e, batch)
    end

    # The node answered, refusing some of the batch (data.refused) or all of it: the
    # others were delivered, and the connection goes on.
    def refused(error, batch)
      indexes = refused_indexes(error, batch.size)
      @sent += batch.size - indexes.size
      queue_full = error.is_a?(RemoteError) && error.code == JSONRPC::CODES[:queue_full]
      reason = queue_full ? REFUSED : "refused: #{error.message[/\A[^:(]*/].strip}"
      @lock.synchronize { @refused[reason] += indexes.size }
      lose(indexes.size, reason, "the node refused #{indexes.size} of #{batch.size} message(s): #{error.message}",
           throttle: true)
    end

    # The indexes +error+ refuses: its data.refused (valid indexes of the batch), or all.
    def refused_indexes(error, size)
      listed = error.is_a?(RemoteError) && error.data.is_a?(Hash) ? error.data["refused"] : nil
      all = (0...size).to_a
      return all unless listed.is_a?(Array) && !listed.empty?

      indexes = listed.select { |i| i.is_a?(Integer) && i >= 0 && i < size }.uniq
      indexes.empty? ? all : indexes
    end

    def failed(error, batch)
      @lock.synchronize do
        @failure ||= error.message
        @room.broadcast
      end
      lose(batch.size, NOT_SENT, "could not forward #{batch.size} message(s): #{error.message}")
      @on_failure&.call(error)
    end

    # Counts +count+ messages lost for +reason+, tells on_loss, and logs +text+ (at most
    # once every LOG_INTERVAL seconds when +throttle+, saying how many went unlogged).
    def lose(count, reason, text, throttle: false)
      @lock.synchronize do
        @lost += count
        @losses[reason] += count
      end
      @on_loss&.call(reason, count)
      return unless text

      now = BerryMQ.monotonic
      if throttle && @logged_at && now - @logged_at < LOG_INTERVAL
        @unlogged += count
        return
      end
      text += " (and #{@unlogged} more refused since the last line)" if throttle && @unlogged.positive?
      @logged_at = now if throttle
      @unlogged = 0 if throttle
      BerryMQ.bus.logger.error("#{@name}: #{text}")
    end

    # Raises QueueFull saying how many messages the node refused since the last flush
    # (then forgets them); true when it refused none. Called with the lock held.
    def report_refused
      return true if @refused.empty?

      counts = @refused.map { |reason, n| "#{n} #{reason}" }.join(", ")
      @refused = Hash.new(0)
      raise QueueFull, "#{@name}: the node refused messages since the last flush (#{counts}); they were not " \
                       "delivered, the others were"
    end
  end
end
