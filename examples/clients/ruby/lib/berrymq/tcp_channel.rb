# frozen_string_literal: true

require "socket"

module BerryMQ
  # JSON-RPC over one TCP connection, one JSON text per line in both directions.
  #
  # A reader thread matches responses to requests by id; requests the node sends on the
  # same connection (after interconnect) are answered, in order, by a worker thread, so a
  # receiver may itself call the node without blocking the reader.
  class TcpChannel
    MAX_LINE = 1_048_576 * 8
    # A node runs at most this many requests that wait (a blocking get, an ask) for one TCP
    # connection at once (its max_waiting setting) and refuses more with Limit reached
    # (-32009); this channel keeps the rest waiting here, in order, instead.
    MAX_WAITING = 16
    # How a request of the node starts (a response starts with "result" or "error").
    REQUEST_START = /\A\s*\[?\s*\{\s*("jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"method"/.freeze

    attr_reader :url

    # +handler+ answers one request Hash from the node with a response Hash (or nil).
    def initialize(url, host, port, handler:, timeout:, on_close: nil, max_waiting: MAX_WAITING,
                   max_size: JSONRPC::MAX_SIZE)
      @url = url
      @max_size = max_size
      @handler = handler
      @timeout = timeout
      @on_close = on_close
      begin
        @socket = Socket.tcp(host, port, connect_timeout: timeout)
      rescue SystemCallError, SocketError, IOError => e
        raise ConnectionClosed, "cannot reach #{url}: #{e.message}"
      end
      @socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      @socket.set_encoding(Encoding::UTF_8)
      @write_lock = Mutex.new
      @lock = Mutex.new
      @pending = {} # id -> the Waiter of the call
      @sizes = {} # id -> the bytes of the call's request
      @too_large = nil # the data of the node's Message too large, after which it closes
      @next_id = 0
      @closed = false
      @closing = false
      @failure = nil
      @inbox = Thread::Queue.new
      @slot_lock = Mutex.new
      @slot_free = ConditionVariable.new
      @slot_line = [] # the calls that wait for a slot, first come first
      @slots_used = 0
      @max_waiting = max_waiting
      @worker = Thread.new { work }
      @reader = Thread.new { read }
    end

    def closed?
      @closed
    end

    # Runs the block (one call that waits at the node: a blocking get, an ask) once fewer
    # than max_waiting such calls are outstanding on this connection, in the order the
    # calls came, and returns its value; returns :expired without running it when
    # +deadline+ (monotonic seconds; nil: none) came first. A node whose own cap is lower
    # (Limit reached, setting max_waiting) lowers this one, and the call waits again.
    def waiting(deadline)
      loop do
        return :expired unless take_slot(deadline)

        begin
          return yield
        rescue RemoteError => e
          raise unless e.code == JSONRPC::CODES[:limit_reached] && e.data.is_a?(Hash) &&
                       e.data["setting"] == "max_waiting"

          lowered = lower_cap(e.data["limit"])
        ensure
          release_slot
        end
        # the node still counts a call we no longer do (an ask answered at its timeout
        # whose receiver runs on): give it a moment
        pause = deadline ? [deadline - BerryMQ.monotonic, 0.05].min : 0.05
        sleep(pause) if !lowered && pause.positive?
      end
    end

    # How many calls that wait are outstanding, and how many wait here for their turn.
    def waiting_calls
      @slot_lock.synchronize { [@slots_used, @slot_line.size] }
    end

    # Over TCP the node calls back on this connection: interconnect's addr is null.
    def callback_url
      nil
    end

    # Calls +method+ and returns its result; raises RemoteError for the node's error,
    # TransportError when no answer came within +timeout+ seconds, ConnectionClosed when
    # the connection is gone.
    def call(method, params, timeout = @timeout)
      waiter = Waiter.new
      id = @lock.synchronize { @next_id += 1 }
      text = JSONRPC.request_text({ "jsonrpc" => "2.0", "method" => method, "params" => params, "id" => id }, @max_size)
      @lock.synchronize do
        raise ConnectionClosed, "the connection to #{@url} is closed#{@failure && " (#{@failure})"}" if @closed

        @pending[id] = waiter
        @sizes[id] = text.bytesize
      end
      write_text(text)
      reply = waiter.wait(timeout, :timeout)
      if reply == :timeout
        @lock.synchronize { @pending.delete(id) && @sizes.delete(id) }
        raise TransportError, "#{@url} did not answer #{method} within #{JSONRPC.seconds(timeout)} s"
      end
      raise reply if reply.is_a?(Exception)

      JSONRPC.result_of(reply, @url)
    end

    def close
      @closing = true
      fail_all(ConnectionClosed.new("the connection to #{@url} was closed"))
      @socket.close unless @socket.closed?
      @inbox.close
      [@reader, @worker].each { |t| t.join(2) unless t == Thread.current }
    rescue IOError
      nil
    end

    private

    def take_slot(deadline)
      ticket = Object.new
      @slot_lock.synchronize do
        @slot_line << ticket
        free = BerryMQ.wait_for(@slot_free, @slot_lock, deadline) do
          @closed || (@slots_used < @max_waiting && @slot_line.first.equal?(ticket))
        end
        @slot_line.delete(ticket)
        @slot_free.broadcast # the next in line may go now
        @slots_used += 1 if free
        free
      end
    end

    def release_slot
      @slot_lock.synchronize do
        @slots_used -= 1
        @slot_free.broadcast
      end
    end

    # Lowers the cap to a node's max_waiting; whether it was lowered.
    def lower_cap(limit)
      return false unless limit.is_a?(Integer) && limit.positive?

      @slot_lock.synchronize do
        next false if limit >= @max_waiting

        @max_waiting = limit
        true
      end
    end

    def write(value)
      write_text(JSONRPC.dump(value, "an answer to #{@url}"))
    end

    def write_text(text)
      @write_lock.synchronize { @socket.write("#{text}\n") }
    rescue IOError, SystemCallError => e
      fail_all(ConnectionClosed.new("the connection to #{@url} failed: #{e.message}"))
      raise ConnectionClosed, "the connection to #{@url} failed: #{e.message}"
    end

    def read
      while (line = @socket.gets("\n", MAX_LINE))
        next if line.strip.empty?

        take(line)
      end
      fail_all(ConnectionClosed.new(@failure || "#{@url} closed the connection"))
    rescue IOError, SystemCallError => e
      fail_all(ConnectionClosed.new("the connection to #{@url} failed: #{e.message}"))
    end

    def take(line)
      value = JSONRPC.parse(line)
    rescue JSON::ParserError => e
      unreadable(line, e)
    else
      if JSONRPC.response?(value)
        respond(value)
      elsif value.is_a?(Array) && !value.empty? && value.all? { |v| JSONRPC.response?(v) }
        value.each { |v| respond(v) }
      else
        @inbox << value
      end
    end

    # A line that is not JSON or nests deeper than the protocol allows (no node writes
    # one): the call it answers fails at once, saying so, rather than waiting for its
    # timeout. When the line names no call we wait for (its id is read from its end), every
    # pending call fails so: any of them may have been answered in it. A request from the
    # node is answered Parse error, as a node answers one.
    def unreadable(line, error)
      why = error.is_a?(JSON::NestingError) ? "nests arrays and objects more than #{JSONRPC::MAX_NESTING} " \
                                                "levels deep, the limit of the protocol" : "is not JSON"
      text = "#{@url} sent a line that #{why} (#{line.bytesize} bytes: #{line[0, 80].inspect})"
      unless line.match?(REQUEST_START)
        id = line[/"id"\s*:\s*(-?\d+)\s*\}\s*\z/, 1]
        waiter = id && @lock.synchronize { @sizes.delete(Integer(id)) && @pending.delete(Integer(id)) }
        return waiter.set(TransportError.new("#{text}; it answered this call")) if waiter

        waiters = @lock.synchronize { @pending.values.tap { @pending.clear && @sizes.clear } }
        waiters.each { |w| w.set(TransportError.new("#{text}; it may have been the answer to this call")) }
        return
      end
      data = error.is_a?(JSON::NestingError) ? { "limit" => JSONRPC::MAX_NESTING } : nil
      write(JSONRPC.error_response(JSONRPC::CODES[:parse_error], nil, data))
    end

    def respond(reply)
      waiter = @lock.synchronize { @sizes.delete(reply["id"]) && @pending.delete(reply["id"]) }
      if waiter
        waiter.set(reply)
      elsif reply["id"].nil? && reply["error"].is_a?(Hash)
        # e.g. Message too large: the node closes the connection after it
        error = reply["error"]
        @failure = "#{error['message']} (#{error['code']})"
        @too_large = error["data"].is_a?(Hash) ? error["data"] : {} if error["code"] == JSONRPC::CODES[:too_large]
      end
    end

    def work
      while (request = @inbox.pop)
        answer = JSONRPC.answer(request, @handler)
        write(answer) if answer
      end
    rescue ConnectionClosed
      nil
    end

    # Whether a request of +size+ bytes is the one the node closed the connection for: over
    # the limit its Message too large named (every request, when it named none).
    def too_large?(size)
      return false unless @too_large

      limit = @too_large["limit"]
      !limit.is_a?(Integer) || size > limit
    end

    def too_large_error
      MessageTooLarge.new("#{@url} refused the request: it is over the node's size limit" \
                          "#{JSONRPC.limit_of(@too_large)}; it was not run, and the node closed the " \
                          "connection (pass max_size: #{@too_large['limit'] || 'N'} to refuse such a message before sending)")
    end

    def fail_all(error)
      was_open = nil
      waiters = @lock.synchronize do
        was_open = !@closed
        @closed = true
        pending = @pending.map { |id, waiter| [waiter, @sizes[id]] }
        @pending.clear
        @sizes.clear
        pending
      end
      waiters.each { |w, size| w.set(too_large?(size) ? too_large_error : error) }
      @slot_lock.synchronize { @slot_free.broadcast }
      @on_close&.call(error) if was_open && !@closing
    end
  end
end
