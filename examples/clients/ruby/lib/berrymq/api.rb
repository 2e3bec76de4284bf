# frozen_string_literal: true

# The module functions: the process's bus and everything a program calls on it.
module BerryMQ
  @bus = nil
  @bus_lock = Mutex.new

  # At exit (also after Ctrl-C), send what is queued for interconnected nodes and close
  # every session, so that nodes free them at once rather than after their ttl.
  at_exit do
    @bus&.close
  rescue StandardError => e
    warn "berrymq: closing the connections at exit failed: #{e.message}"
  end

  class << self
    # The process's bus (made on first use).
    def bus
      @bus || @bus_lock.synchronize { @bus ||= Bus.new }
    end

    # Closes every connection, forgets every receiver and starts a fresh bus (for tests).
    def reset
      old = @bus_lock.synchronize { @bus.tap { @bus = nil } }
      old&.close
      nil
    end

    # When true, receivers' exceptions are raised from twitter (BerryMQ::ReceiverErrors)
    # after every receiver ran; by default they are logged on BerryMQ.logger.
    def raise_errors=(value)
      bus.raise_errors = value
    end

    def raise_errors
      bus.raise_errors
    end

    def logger
      bus.logger
    end

    def logger=(logger)
      bus.logger = logger
    end

    # -- push -------------------------------------------------------------------------------

    # Sends a message: every matching receiver in this process is called (in registration
    # order, in this thread, before twitter returns); unless the name is local ("_..."),
    # it is also forwarded to every interconnected node.
    def twitter(identifier, *args, **kwargs)
      bus.twitter(identifier, *args, **kwargs)
    end

    # Registers the block as a receiver of +pattern+ (held strongly). +guard+ (a callable
    # taking the message) returning false or nil skips a message. Returns a Subscription:
    # #cancel stops it.
    #
    #   BerryMQ.following_function("job:*") { |message| puts message.id }
    def following_function(pattern, guard: nil, &block)
      raise ArgumentError, "following_function needs a block" unless block

      regist_function(pattern, block, guard: guard)
    end

    # Registers any callable (a Proc, a Method) as a receiver of +pattern+.
    def regist_function(pattern, callable, guard: nil)
      raise ArgumentError, "#{callable.inspect} does not respond to call" unless callable.respond_to?(:call)

      bus.subscribe(Subscription.new(bus, pattern, callable: callable, guard: guard))
    end

    # Registers +object+'s method +name+ as a receiver of +pattern+ (+object+ held weakly
    # unless weak: false). A guard block runs with self being +object+.
    def regist_method(pattern, object, name, weak: true, &guard)
      bus.subscribe(Subscription.new(bus, pattern, target: object, method_name: name.to_sym,
                                                   guard: guard, weak: weak))
    end

    # Stops every receiver of +target+ (a Follower instance, a block or callable, a
    # Subscription); returns how many there were.
    def unfollow(target)
      bus.unfollow(target)
    end

    # Request/reply: the return values of every matching receiver, here first (in
    # registration order) then on each connected node (in the order of the connections).
    # A receiver that raised gives a BerryMQ::ReplyError in its place, so does a node that
    # did not answer within +timeout+ seconds (which bounds each node's answer). Every
    # connection is asked with the same uid, so a node reached by several connections runs
    # its receivers once (the others answer no replies), as the Python client does.
    def ask(identifier, *args, timeout: 5.0, **kwargs)
      timeout = BerryMQ.wait_seconds(timeout, "ask: timeout")
      message = Message.new(identifier, args, kwargs)
      replies = bus.ask_local(message)
      return replies if message.identifier.local?

      connections = bus.connections
      return replies if connections.empty?

      message = Message.new(message.identifier, args, kwargs, uid: bus.new_uid)
      connections.each do |connection|
        replies.concat(connection.ask_message(message, timeout))
      rescue TransportError => e
        replies << ReplyError.new(e.class.name, e.message, connection.url, "")
      end
      replies
    end

    # -- between processes --------------------------------------------------------------

    # Style 01: forward every non-local message both ways with the node at +addr+
    # ("tcp://host:port" or "http://host:port"; over HTTP a small server of this process,
    # on 127.0.0.1 and a free port, takes the node's calls). Returns the Connection.
    # Without +ttl+ a session gets Connection::DEFAULT_TTL, or the node's max_ttl when
    # that is less (Connection#ttl says which), in every style.
    def interconnect(addr, ttl: nil, **options)
      track(Connection.new(addr, :interconnect, ttl: ttl, **options))
    end

    # Style 02: send to the node at +addr+ with BerryMQ.send_message.
    def connect_oneway(addr, ttl: nil, **options)
      track(Connection.new(addr, :oneway, ttl: ttl, **options))
    end

    # Style 03: the node keeps a queue of +pattern+ for this process, pulled with
    # BerryMQ.get and BerryMQ.get_nowait.
    def connect_via_queue(addr, pattern, ttl: nil, **options)
      track(Connection.new(addr, :queue, ttl: ttl, pattern: pattern, **options))
    end

    # Sends one message to the node of the most recent connection (any style); returns
    # once the node's receivers have it.
    def send_message(identifier, *args, **kwargs)
      latest.send_message(identifier, *args, **kwargs)
    end

    # The next message of the most recent connect_via_queue connection's queue.
    def get(block: true, timeout: nil)
      latest(:queue).get(block: block, timeout: timeout)
    end

    def get_nowait
      latest(:queue).get_nowait
    end

    # Waits until everything twittered so far reached every interconnected node; false
    # when +timeout+ seconds passed first, or when a message twittered since the last
    # flush was lost (a node refused it, or an interconnection failed: see
    # Connection#losses and BerryMQ.losses; each loss was logged where it happened).
    def flush(timeout = nil)
      timeout = BerryMQ.wait_seconds(timeout, "flush: timeout", nil_ok: true)
      deadline = timeout && (BerryMQ.monotonic + timeout)
      done = true
      bus.connections.each do |connection|
        left = deadline && [deadline - BerryMQ.monotonic, 0].max
        done = connection.flush(left) && done
      rescue QueueFull, ConnectionClosed
        done = false
      end
      !bus.lost_since_flush? && done
    end

    # The messages twittered to interconnected nodes that were lost, by reason
    # ("refused: queue full", "not sent: connection failed or closed").
    def losses
      bus.losses
    end

    # Closes the connections to +addr+, or every one when +addr+ is nil (lost
    # interconnections too: twitter no longer counts them). They close side by side: a
    # node that does not answer costs at most Connection::CLOSE_TIMEOUT in all.
    def close_connection(addr = nil)
      wanted = addr && Connection.normalize(addr)[3]
      chosen = (bus.connections + bus.lost_links.values).select { |c| wanted.nil? || c.url == wanted }
      Bus.close_together(chosen)
      nil
    end

    def connections
      bus.connections
    end

    private

    def track(connection)
      connection.bus.track(connection)
      connection
    end

    def latest(style = nil)
      found = bus.connections.reverse.find { |c| style.nil? || c.style == style }
      return found if found

      lost, error = bus.lost
      if lost && (style.nil? || lost.style == style)
        raise ConnectionClosed, "the connection to #{lost.url} (#{lost.style}) is lost: " \
                                "#{error.message}; connect again"
      end
      raise ConnectionClosed, "no queue connection is open; call connect_via_queue(addr, pattern)" if style

      raise ConnectionClosed, "no connection is open; call connect_oneway(addr) first"
    end
  end
end
