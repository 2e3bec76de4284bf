# frozen_string_literal: true

module BerryMQ
  # Forwards an interconnection's messages from a background thread: what gathers while
  # one send_messages request is on its way goes out as the next one, so twitter never
  # waits for the network (and a receiver that twitters while the node is calling it
  # cannot deadlock). Bounded: a sender finding LIMIT messages waiting waits up to
  # BLOCK_TIMEOUT seconds for room, then gets TransportError; nothing is dropped silently.
  class Outbox
    LIMIT = 10_000
    BLOCK_TIMEOUT = 10.0
    # Room left in a request for what surrounds the messages (method, token, secret, id).
    ENVELOPE = 512

    attr_reader :sent, :lost, :failure

    # +sink+ sends one array of wire messages and returns once the node acknowledged it.
    # One batch holds at most +max_bytes+ of message JSON. +on_failure+ is called once,
    # from the outbox's thread, with the exception that stopped it.
    def initialize(name, limit: LIMIT, block_timeout: BLOCK_TIMEOUT,
                   max_bytes: JSONRPC::MAX_SIZE - ENVELOPE, on_failure: nil, &sink)
      @name = name
      @on_failure = on_failure
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
    # Raises ConnectionClosed when sending failed.
    def flush(timeout = nil)
      marker = Waiter.new
      @lock.synchronize do
        raise ConnectionClosed, "#{@name}: #{@failure}" if @failure
        return true if @stopped

        @items << marker
        @more.signal
      end
      done = marker.wait(timeout, false)
      raise ConnectionClosed, "#{@name}: #{@failure}" if @failure

      done
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
        @lost += batch.size
        return
      end
      @sink.call(batch)
      @sent += batch.size
    rescue StandardError => e
      @lost += batch.size
      @lock.synchronize do
        @failure = e.message
        @room.broadcast
      end
      BerryMQ.bus.logger.error("#{@name}: could not forward #{batch.size} message(s): #{e.message}")
      @on_failure&.call(e)
    end
  end
end
